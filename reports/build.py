"""Build the agreement report of a study as one JSON-ready dict; every renderer starts from it."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd
from django.db import connections, router, transaction
from django.db.models.functions import Length

from annotation import planner
from annotation.aggregation import LABELS, STATUS_VALID, StudyAggregate, study_aggregate, votes_summary
from annotation.models import CONFIDENCE_MAX, CONFIDENCE_MIN, Item, Rating, Study, confidence_in_scale
from annotation.participants import participants_onboarding

from . import agreement, audit, ppi, stats
from .manifest import judge_runs_of, judge_runs_reliability, report_manifest
from .quality import annotator_agreement

# Krippendorff's ordinal alpha needs the choices in order: the baseline better < similar < the
# challenger better.
ORDINAL_CODE = {"baseline": 0, "similar": 1, "challenger": 2}
ORDINAL_FROM_CODE = np.array([ORDINAL_CODE[label] for label in LABELS], dtype=float)


def min_confidence_parse(*, value, study: Study) -> int:
    """The minimum confidence from a form, query string or command line; the study's default when blank."""
    if value is None or str(value).strip() == "":
        return study.min_confidence
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ValueError(f"min_confidence must be a whole number from {CONFIDENCE_MIN} to {CONFIDENCE_MAX}, got {value!r}") from None
    if not confidence_in_scale(number):
        raise ValueError(f"min_confidence must be from {CONFIDENCE_MIN} to {CONFIDENCE_MAX} "
                         f"(confidence is rated {CONFIDENCE_MIN}-{CONFIDENCE_MAX}), got {number}")
    return number


def _question_keys(study: Study, ratings: pd.DataFrame) -> tuple[list[str], dict[str, dict]]:
    questions = {q.key: {"label": q.label, "text": q.text} for q in study.questions.all()}
    extra = sorted(set(ratings["question"].unique()) - set(questions))  # e.g. imported votes for a question since removed
    return [*questions, *extra], questions


def _human_agreement(*, human: pd.DataFrame, overlap: int) -> dict:
    """Fleiss, Krippendorff (nominal, ordinal) and percent agreement of one question's human ratings.

    No confidence filter here: these measure how far the annotators agree, every rating counts.
    """
    if human.empty:
        return {"fleiss_kappa": None, "fleiss_items": 0, "krippendorff_alpha": None,
                "krippendorff_alpha_ordinal": None, "percent_agreement": None}
    item_index, _ = pd.factorize(human["item_id"])
    code = human["code"].to_numpy()
    counts = np.bincount(item_index * len(LABELS) + code, minlength=(item_index.max() + 1) * len(LABELS))
    counts = counts.reshape(-1, len(LABELS))  # items x (baseline, challenger, similar)
    full = counts[counts.sum(axis=1) == overlap]  # Fleiss' kappa assumes the same number of raters per item
    # Raters x items, NaN where a rater did not rate an item (one current rating per rater and item).
    raters, rater_index = np.unique(human["rater"].to_numpy(dtype=object), return_inverse=True)
    nominal = np.full((len(raters), counts.shape[0]), np.nan)
    nominal[rater_index, item_index] = code
    ordinal = np.where(np.isnan(nominal), np.nan, ORDINAL_FROM_CODE[np.nan_to_num(nominal).astype(int)])
    return {
        "fleiss_kappa": stats.fleiss_kappa(counts=full),
        "fleiss_items": int(len(full)),
        "krippendorff_alpha": stats.krippendorff_alpha(reliability_data=nominal, level="nominal", value_domain=[0, 1, 2]),
        "krippendorff_alpha_ordinal": stats.krippendorff_alpha(
            reliability_data=ordinal, level="ordinal", value_domain=[0, 1, 2]),
        "percent_agreement": stats.percent_agreement(counts=counts),
    }


def _llm_versus_human(*, summary: dict, llm_valid: pd.Series, human_valid: pd.Series) -> dict:
    # llm_valid, human_valid: item_id -> label code of the items with a label
    """One LLM rater's labels for a question and how they agree with the human majority on items valid in both."""
    both = pd.concat([human_valid.rename("human"), llm_valid.rename("llm")], axis=1, join="inner")
    n = len(LABELS)
    human_code = both["human"].to_numpy(dtype=np.int64)
    llm_code = both["llm"].to_numpy(dtype=np.int64)
    confusion = np.bincount(human_code * n + llm_code, minlength=n * n).reshape(n, n)  # rows human, columns LLM
    compared = int(len(both))
    return {
        **summary,
        "cohen_kappa_vs_human": stats.cohen_kappa(confusion=confusion) if compared else None,
        "agreement_vs_human": float(np.trace(confusion) / compared) if compared else None,
        "compared": compared,
        "confusion": confusion.astype(int).tolist(),
    }


def _valid_labels(votes: pd.DataFrame, question: str) -> pd.Series:
    """item_id -> label code of the items with a label for ``question``."""
    if question not in votes.index.get_level_values("question"):
        return pd.Series(dtype=np.int64)
    of_question = votes.xs(question, level="question")
    return of_question.loc[of_question["status"] == STATUS_VALID, "code"]


@contextmanager
def _snapshot():
    """One consistent view of the database for the report's few queries, on PostgreSQL.

    Annotators keep rating while a report is made; under READ COMMITTED the ratings, the
    assignments and the manifest could come from different moments. Inside an outer
    transaction (tests, callers) the isolation level cannot change, so that one is used.
    """
    connection = connections[router.db_for_read(Rating)]
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def report_build(*, study: Study, min_confidence: int | None = None, aggregate: StudyAggregate | None = None) -> dict:
    """The agreement report of ``study``: per question labels, agreement, win rate, LLM raters, annotators, manifest."""
    with _snapshot():
        return _report_build(study=study, min_confidence=min_confidence, aggregate=aggregate)


def _report_build(*, study: Study, min_confidence: int | None, aggregate: StudyAggregate | None) -> dict:
    if aggregate is None:
        aggregate = study_aggregate(study=study, min_confidence=min_confidence)
    ratings = aggregate.ratings
    keys, question_info = _question_keys(study, ratings)
    human_ratings = ratings[ratings["rater_kind"] == Rating.RaterKind.HUMAN]
    human_summary = votes_summary(votes=aggregate.human, questions=keys)
    llm_summary = {name: votes_summary(votes=votes, questions=keys) for name, votes in aggregate.llm.items()}
    extras = _judge_extras(study=study, names=list(aggregate.llm))
    questions = {}
    for key in keys:
        summary = human_summary[key]
        human_valid = _valid_labels(aggregate.human, key)
        distribution = summary["distribution"]
        questions[key] = {
            "label": question_info.get(key, {}).get("label", key),
            "text": question_info.get(key, {}).get("text", ""),
            **summary,
            **_human_agreement(human=human_ratings[human_ratings["question"] == key], overlap=study.overlap),
            "win_rate": stats.win_rate(wins=distribution["challenger"], losses=distribution["baseline"], seed=study.seed),
            "llm": {
                name: _llm_versus_human(summary=llm_summary[name][key], llm_valid=_valid_labels(votes, key),
                                        human_valid=human_valid)
                for name, votes in aggregate.llm.items()
            },
        }
        # Issue 20: robust agreement, intervals, human + judge combined, judge audit, power.
        question = questions[key]
        question.update(_robust_agreement(human=human_ratings[human_ratings["question"] == key], overlap=study.overlap,
                                          seed=study.seed))
        question["human_only"] = _shares_and_win(human_valid.to_numpy())
        question["smallest_detectable_gap"] = planner.smallest_detectable_gap(decisive=question["win_rate"]["decisive"])
        question["human_length_preference"] = _length_preference(human_valid, extras["lengths"])
        for name, votes in aggregate.llm.items():
            llm_valid = _valid_labels(votes, key)
            question["llm"][name].update(
                _judge_combined(human_valid=human_valid, llm_valid=llm_valid),
                audit=_judge_audit(name=name, question=key, human_valid=human_valid, llm_valid=llm_valid,
                                   extras=extras, seed=study.seed),
            )
    annotators = annotator_agreement(study=study, ratings=ratings, min_confidence=aggregate.min_confidence)
    manifest = report_manifest(study=study, ratings=ratings, min_confidence=aggregate.min_confidence)
    manifest["combined_labels"] = _combined_manifest(questions)
    return {
        "study": study.slug,
        "min_confidence": aggregate.min_confidence,
        "baseline": study.baseline_name,
        "challenger": study.challenger_name,
        "labels": list(LABELS),
        "questions": questions,
        "annotators": annotators,
        # Crowd participants' onboarding (issue 21): shown here, counted in no figure of the report.
        "onboarding": participants_onboarding(study=study),
        "judges": _judges_overall(questions=questions, extras=extras),
        "power": {"power": planner.POWER, "alpha": planner.ALPHA,
                  "rule": "smallest gap 2w - 1 in the challenger's share w of decisive labels that a two-sided "
                          "test against 1/2 detects with the study's decisive labels"},
        # Each judge run's reliability verdict, with its reasons: every renderer shows it beside the run.
        "judge_runs": judge_runs_reliability(manifest=manifest),
        "manifest": manifest,
    }


# --- issue 20: agreement that survives a dominant category, human + judge combined, judge audit ---------------

def _robust_agreement(*, human: pd.DataFrame, overlap: int, seed: int) -> dict:
    """Gwet's AC1, prevalence and bias indices, the dominant category, and item-bootstrap 95% intervals.

    The point estimates of Fleiss and Krippendorff stay those of ``_human_agreement`` (the
    packages'); the intervals resample items with the same formulas (``agreement``).
    """
    none = {"gwet_ac1": None, "prevalence_index": None, "bias_index": None, "dominant_category": None,
            "interval_withheld": None, "agreement_ci95": {name: [None, None] for name in AGREEMENT_CI_NAMES}}
    if human.empty:
        return none
    q = len(LABELS)
    item_index, _ = pd.factorize(human["item_id"])
    code = human["code"].to_numpy()
    counts = np.bincount(item_index * q + code, minlength=(item_index.max() + 1) * q).reshape(-1, q)
    _, rater_index = np.unique(human["rater"].to_numpy(dtype=object), return_inverse=True)
    rater_counts = np.bincount(rater_index * q + code, minlength=(rater_index.max() + 1) * q).reshape(-1, q)
    full = counts[counts.sum(axis=1) == overlap]
    point = {
        "gwet_ac1": agreement.number(agreement.gwet_ac1_weighted(counts=counts)[0]),
        "prevalence_index": agreement.prevalence_index(counts=counts),
        "bias_index": agreement.bias_index(rater_counts=rater_counts),
        "dominant_category": agreement.dominant_category(counts=counts, labels=LABELS),
    }
    if len(counts) < agreement.INTERVAL_MIN_ITEMS:
        return {**point, "agreement_ci95": none["agreement_ci95"],
                "interval_withheld": f"{len(counts)} items with ratings: intervals need at least "
                                     f"{agreement.INTERVAL_MIN_ITEMS}"}
    weights = agreement.bootstrap_weights(n_items=len(counts), resamples=agreement.AGREEMENT_RESAMPLES, seed=seed)
    # One pass over the weights for every coefficient; Fleiss' kappa on its own only when some items
    # have fewer ratings than the overlap (it needs the same number per item).
    every_item_full = len(full) == len(counts)
    resampled = agreement.agreement_resampled(counts=counts, weights=weights, ordinal_order=np.argsort(ORDINAL_FROM_CODE),
                                              fleiss=every_item_full)
    if not every_item_full:
        resampled["fleiss_kappa"] = (agreement.fleiss_kappa_weighted(counts=full, weights=agreement.bootstrap_weights(
            n_items=len(full), resamples=agreement.AGREEMENT_RESAMPLES, seed=seed)) if len(full) else np.array([]))
    return {**point, "interval_withheld": None,
            "agreement_ci95": {name: agreement.percentile_interval(resampled[name]) for name in AGREEMENT_CI_NAMES}}


AGREEMENT_CI_NAMES = ("fleiss_kappa", "krippendorff_alpha", "krippendorff_alpha_ordinal", "gwet_ac1")
CHALLENGER = LABELS.index("challenger")
BASELINE = LABELS.index("baseline")


def _by_label(values: list) -> dict:
    return dict(zip(LABELS, values))


def _shares_and_win(codes: np.ndarray) -> dict:
    """One rater group's shares of each option and the challenger's win rate, with 95% CLT intervals."""
    shares = ppi.classical_share(codes=codes, q=len(LABELS))
    return {"n": shares["n"], "share": _by_label(shares["share"]), "ci95": _by_label(shares["ci95"]),
            "win_rate": ppi.win_rate_classical(codes=codes, q=len(LABELS), challenger=CHALLENGER, baseline=BASELINE)}


def _judge_combined(*, human_valid: pd.Series, llm_valid: pd.Series) -> dict:
    """The judge alone (naive) and prediction-powered shares and win rate (human majority + this judge)."""
    both = human_valid.index.intersection(llm_valid.index)
    judge_only = llm_valid.index.difference(human_valid.index)
    combined = ppi.ppi_shares_and_win_rate(
        human=human_valid.loc[both].to_numpy(), judge_on_human=llm_valid.loc[both].to_numpy(),
        judge_only=llm_valid.loc[judge_only].to_numpy(), q=len(LABELS), challenger=CHALLENGER, baseline=BASELINE)
    combined["share"] = _by_label(combined["share"])
    combined["ci95"] = _by_label(combined["ci95"])
    return {"judge_only": _shares_and_win(llm_valid.to_numpy()), "ppi": combined}


def _judge_extras(*, study: Study, names: list[str]) -> dict:
    """What the audit needs beyond the labels: each LLM rating's order verdicts and probabilities, response lengths, runs."""
    meta: dict[tuple[str, str], dict[int, dict]] = {}  # (rater, question) -> item_id -> Rating.meta
    if names:
        for item_id, question, rater, m in (
            Rating.objects.filter(item__study=study, item__kind=Item.Kind.NORMAL, is_current=True,
                                  rater_kind=Rating.RaterKind.LLM)
            .order_by().values_list("item_id", "question", "rater", "meta")
        ):
            meta.setdefault((rater, question), {})[item_id] = m or {}
    # Lengths in characters, counted by the database: the texts themselves need not travel.
    lengths = pd.DataFrame.from_records(
        list(Item.objects.filter(study=study, kind=Item.Kind.NORMAL).order_by()
             .annotate(baseline_length=Length("baseline_response"), challenger_length=Length("challenger_response"))
             .values_list("id", "baseline_length", "challenger_length")),
        columns=["item_id", "baseline", "challenger"])
    longer = np.sign(lengths["challenger"].to_numpy(dtype=np.int64) - lengths["baseline"].to_numpy(dtype=np.int64))
    runs = judge_runs_of(study=study)
    systems = {
        role: [n for n in (name, getattr(system, "name", None), getattr(system, "backbone", None),
                           getattr(system, "method", None)) if n]
        for role, name, system in (("baseline", study.baseline_name, study.baseline_system),
                                   ("challenger", study.challenger_name, study.challenger_system))
    }
    # challenger_longer: 1 longer, 0 shorter, -1 same length (left out of the length preference)
    return {"meta": meta, "lengths": pd.Series(np.where(longer > 0, 1, np.where(longer < 0, 0, -1)),
                                               index=lengths["item_id"].to_numpy()),
            "runs": {run.name: run for run in runs}, "systems": systems}


def _length_preference(valid: pd.Series, lengths: pd.Series) -> dict:
    decisive = valid[valid != LABELS.index("similar")]
    return audit.length_preference(chose_challenger=(decisive.to_numpy() == CHALLENGER).astype(int),
                                   challenger_longer=lengths.reindex(decisive.index, fill_value=-1).to_numpy())


def _first_position(metas: list[dict]) -> np.ndarray:
    """1 / 0 / -1 per single-order verdict: chose the first-shown response, the second, similar."""
    out = []
    for m in metas:
        for baseline_side, choice in (m.get("orders") or {}).items():
            if choice == "similar":
                out.append(-1)
            else:
                first = "baseline" if baseline_side == "A" else "challenger"
                out.append(1 if choice == first else 0)
    return np.array(out, dtype=np.int64)


def _judge_audit(*, name: str, question: str, human_valid: pd.Series, llm_valid: pd.Series, extras: dict,
                 seed: int) -> dict:
    """Order flips, first-position and length preference, calibration and Cohen's kappa (with interval) vs humans."""
    by_item = extras["meta"].get((name, question), {})
    metas = list(by_item.values())
    flips = sum(bool(m.get("flipped")) for m in metas)
    both = human_valid.index.intersection(llm_valid.index)
    human_code = human_valid.loc[both].to_numpy(dtype=np.int64)
    llm_code = llm_valid.loc[both].to_numpy(dtype=np.int64)
    chosen = [by_item.get(int(i), {}).get("probabilities", {}) for i in both]
    confidence = np.array([p.get(LABELS[c], np.nan) if p else np.nan for p, c in zip(chosen, llm_code)], dtype=float)
    known = ~np.isnan(confidence)
    weights = agreement.bootstrap_weights(n_items=len(both), resamples=agreement.AGREEMENT_RESAMPLES, seed=seed)
    return {
        "verdicts": len(metas),
        "flip_rate": audit.proportion(successes=flips, trials=len(metas)),
        "first_position": audit.first_position_preference(orders_first=_first_position(metas)),
        "length_preference": _length_preference(llm_valid, extras["lengths"]),
        "calibration": audit.calibration(confidence=confidence[known], correct=(human_code == llm_code)[known]),
        "cohen_kappa_ci95": (agreement.percentile_interval(agreement.cohen_kappa_weighted(
            first=human_code, second=llm_code, q=len(LABELS), weights=weights)) if len(both) else [None, None]),
    }


def _judges_overall(*, questions: dict, extras: dict) -> dict:
    """Per judge run over all questions: model, self-preference flag, pooled flip, first-position and length shares."""
    def pooled(audits: list[dict], field: str) -> dict:
        successes = sum(round(a[field]["share"] * a[field]["n"]) for a in audits if a[field]["n"])
        return audit.proportion(successes=int(successes), trials=sum(a[field]["n"] for a in audits))

    out = {}
    for name, run in extras["runs"].items():
        audits = [q["llm"][name]["audit"] for q in questions.values() if name in q["llm"]]
        out[name] = {"model_id": run.model_id, "prompt_version": run.prompt_version,
                     "self_preference": audit.self_preference(judge_model=run.model_id, systems=extras["systems"]),
                     "flip_rate": pooled(audits, "flip_rate"), "first_position": pooled(audits, "first_position"),
                     "length_preference": pooled(audits, "length_preference")}
    return out


def _combined_manifest(questions: dict) -> dict:
    """The judge runs whose labels were combined with the human majority, and the items each counted."""
    return {
        "method": "prediction-powered inference (Angelopoulos et al. 2023; ppi_py.ppi_mean_ci, power-tuned)",
        "questions": {
            key: {name: {"labelled_by_both": llm["ppi"]["labelled"], "judge_only": llm["ppi"]["judge_only"],
                         "human_only_total": q["human_only"]["n"], "judge_total": llm["judge_only"]["n"]}
                  for name, llm in q["llm"].items()}
            for key, q in questions.items()
        },
    }
