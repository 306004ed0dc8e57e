"""Reads about judge runs: the summary stored with a run and printed by ``run_judge``."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from annotation.models import Item, Rating

from .models import JudgeRun, JudgeVerdict


def judge_run_summary(*, run: JudgeRun, items: Sequence[Item] | None = None) -> dict:
    """Counts, choices, failures, and the two position-bias figures of a run (over ``items``, or all judged).

    consistency[q]: share of (item, q) pairs whose verdict was the same in both orders (the rest
    became "similar", flagged as flipped). position_bias[q]: mean P(A) - P(B) over all verdicts;
    since every pair is shown both ways, preferences for a response cancel out and what is left
    is the judge's preference for a position (0 means none).
    """
    item_ids = [i.pk for i in items] if items is not None else None
    verdicts = JudgeVerdict.objects.filter(run=run)
    ratings = Rating.objects.filter(rater=run.name, rater_kind=Rating.RaterKind.LLM, is_current=True,
                                    item__study=run.study)
    if item_ids is not None:
        verdicts = verdicts.filter(item__in=item_ids)
        ratings = ratings.filter(item__in=item_ids)
    failed = list(verdicts.filter(failed=True).values_list("item_id", "question", "baseline_side", "error"))
    bias: dict[str, list[float]] = defaultdict(list)
    for question, probabilities in verdicts.filter(failed=False).values_list("question", "probabilities"):
        bias[question].append(probabilities["A"] - probabilities["B"])
    flips: dict[str, list[bool]] = defaultdict(list)
    choices: dict[str, Counter] = defaultdict(Counter)
    for question, choice, meta in ratings.values_list("question", "choice", "meta"):
        flips[question].append(bool(meta.get("flipped")))
        choices[question][choice] += 1
    all_flips = [f for fs in flips.values() for f in fs]
    return {
        "run": run.name,
        "items": len(item_ids) if item_ids is not None else verdicts.values("item").distinct().count(),
        "verdicts": verdicts.filter(failed=False).count(),
        "failed": len(failed),
        "failures": [{"item": i, "question": q, "baseline_side": s, "error": e} for i, q, s, e in failed[:20]],
        "ratings": sum(len(fs) for fs in flips.values()),
        "consistency": {q: round(1 - sum(fs) / len(fs), 4) for q, fs in sorted(flips.items())},
        "consistency_overall": round(1 - sum(all_flips) / len(all_flips), 4) if all_flips else None,
        "position_bias": {q: round(sum(b) / len(b), 4) for q, b in sorted(bias.items())},
        "choices": {q: dict(sorted(c.items())) for q, c in sorted(choices.items())},
    }
