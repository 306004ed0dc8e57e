"""Every system of every study ranked per question by Bradley-Terry, from the human majority and from each judge.

Reads the studies (one aggregation each, the same ``study_aggregate`` the report uses) and hands
plain counts to ``ranking.bt_ranking``. A system is named by its modeling System when the study
links one, else by the study's baseline / challenger name; a judge is named by its model id, so
the same judge model over several studies forms one ranking.
"""
from __future__ import annotations

import io
import json

from django.template.loader import render_to_string

from annotation.aggregation import study_aggregate, votes_summary
from annotation.models import Study
from common.csv_safe import csv_writer

from .manifest import _version, judge_models_of
from .ranking import RANKING_RESAMPLES, REGULARISATION, TIE_RULE, bt_ranking
from .render import tex_escape

HUMAN = "Human"
RANKING_FORMATS = ("json", "csv", "tex")
RANKING_CONTENT_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8",
                         "tex": "application/x-tex; charset=utf-8"}


def _system_name(system, fallback: str) -> str:
    return system.name if system is not None else fallback


def systems_ranking_build(*, resamples: int = RANKING_RESAMPLES, seed: int = 0) -> dict:
    """Per rater group (Human, each judge model) and question: systems ranked with bootstrap intervals.

    Returns {"method", "tie_rule", "resamples", "seed", "studies": [...], "rankings": {group: {question:
    {"label", "studies", "systems": [rows of ranking.bt_ranking]}}}}.
    """
    studies = list(Study.objects.select_related("baseline_system", "challenger_system").prefetch_related("questions")
                   .order_by("slug"))
    counts: dict[str, dict[str, list]] = {}
    labels: dict[str, str] = {}
    listed = []
    for study in studies:
        baseline = _system_name(study.baseline_system, study.baseline_name)
        challenger = _system_name(study.challenger_system, study.challenger_name)
        listed.append({"study": study.slug, "baseline": baseline, "challenger": challenger})
        for q in study.questions.all():
            labels.setdefault(q.key, q.label)
        aggregate = study_aggregate(study=study)
        models = judge_models_of(study=study)
        groups = {HUMAN: aggregate.human,
                  **{f"Judge {models.get(name, name)}": votes for name, votes in aggregate.llm.items()}}
        for group, votes in groups.items():
            for key, summary in votes_summary(votes=votes).items():
                d = summary["distribution"]
                if sum(d.values()):
                    counts.setdefault(group, {}).setdefault(key, []).append(
                        (baseline, challenger, d["baseline"], d["challenger"], d["similar"], study.slug))
    rankings = {}
    for group, by_question in counts.items():
        for key, rows in sorted(by_question.items()):
            systems = sorted({r[0] for r in rows} | {r[1] for r in rows})
            index = {name: i for i, name in enumerate(systems)}
            comparisons = [(index[b], index[c], bw, cw, t) for b, c, bw, cw, t, _ in rows]
            rankings.setdefault(group, {})[key] = {
                "label": labels.get(key, key), "studies": [r[5] for r in rows],
                "systems": bt_ranking(systems=systems, comparisons=comparisons, resamples=resamples, seed=seed),
            }
    return {
        "method": "Bradley-Terry (Bradley & Terry 1952), maximum likelihood by choix.ilsr_pairwise_dense",
        "tie_rule": TIE_RULE, "regularisation": REGULARISATION, "resamples": resamples, "seed": seed,
        "interval": "95% percentile bootstrap, items resampled within each study",
        "studies": listed, "rankings": rankings,
        "software": {package: _version(package) for package in ("choix", "numpy")},
    }


def ranking_csv(*, ranking: dict) -> str:
    """One row per (rater group, question, system): strength, interval, rank, rank interval, decisive labels."""
    buffer = io.StringIO()
    writer = csv_writer(buffer)  # system names may begin with = + - @ (formula injection)
    writer.writerow(["group", "question", "system", "strength", "ci95_low", "ci95_high", "rank", "rank_ci95_low",
                     "rank_ci95_high", "decisive"])
    for group, by_question in ranking["rankings"].items():
        for key, block in by_question.items():
            for row in block["systems"]:
                writer.writerow([group, key, row["system"], row["strength"], *row["ci95"], row["rank"], *row["rank_ci95"],
                                 row["decisive"]])
    writer.writerow([])
    writer.writerow(["# tie rule", ranking["tie_rule"]])
    return buffer.getvalue()


def ranking_tex(*, ranking: dict) -> str:
    """One booktabs table per rater group: systems by question with strength [95% CI] and rank."""
    lines = [f"% {ranking['method']}; {ranking['interval']}, {ranking['resamples']} resamples, seed {ranking['seed']}",
             f"% tie rule: {ranking['tie_rule']}", "% needs \\usepackage{booktabs}"]
    for group, by_question in ranking["rankings"].items():
        lines += ["", r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{llrll}", r"\toprule",
                  r"Question & System & Rank & Strength [95\% CI] & Rank 95\% CI \\", r"\midrule"]
        for key, block in by_question.items():
            for row in block["systems"]:
                lines.append(f"{key.upper()} & {tex_escape(row['system'])} & {row['rank']} & {row['strength']:.2f} "
                             f"[{row['ci95'][0]:.2f}, {row['ci95'][1]:.2f}] & {row['rank_ci95'][0]}--{row['rank_ci95'][1]} \\\\")
        lines += [r"\bottomrule", r"\end{tabular}",
                  (rf"\caption{{Systems ranked by Bradley-Terry strength (log-odds) from {tex_escape(group)} labels "
                   r"across studies; similar labels left out; bootstrap 95\% intervals over items within studies.}"),
                  r"\end{table}"]
    return "\n".join(lines) + "\n"


def ranking_render(*, ranking: dict, fmt: str) -> str:
    """The ranking in one of RANKING_FORMATS (html is the staff page). Raises ValueError on another format."""
    if fmt == "json":
        return json.dumps(ranking, indent=2) + "\n"
    if fmt == "csv":
        return ranking_csv(ranking=ranking)
    if fmt == "tex":
        return ranking_tex(ranking=ranking)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(RANKING_FORMATS)}")


def ranking_html(*, ranking: dict) -> str:
    return render_to_string("reports/_ranking_body.html", {"ranking": ranking})
