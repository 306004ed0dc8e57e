"""Reads about judge runs: the summary stored with a run and printed by ``run_judge``."""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from statistics import median

from annotation.models import Item, Rating

from .models import JudgeRun, JudgeVerdict
from .prompts import OPTIONS
from .reliability import run_reliability
from .scoring import pair_verdict


def judge_run_summary(*, run: JudgeRun, items: Sequence[Item] | None = None) -> dict:
    """Counts, choices, failures, abstentions and the two position-bias figures of a run (over ``items``, or all judged).

    consistency[q]: share of (item, q) pairs, both orders scored (abstentions included: they
    still show where the judge leans), whose verdict was the same in both orders (the rest
    became "similar", flagged as flipped). position_bias[q]: mean P(A) - P(B) over all scored
    verdicts; since every pair is shown both ways, preferences for a response cancel out and what
    is left is the judge's preference for a position (0 means none). abstentions[q]: verdicts
    (single orders) whose option mass was below the run's min_option_mass; option_mass[q]:
    their median option mass; answers: how often each letter was the judge's answer.
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
    masses: dict[str, list[float]] = defaultdict(list)
    abstentions: Counter = Counter()
    answers: Counter = Counter({o: 0 for o in OPTIONS})
    orders: dict[tuple[int, str], dict[str, dict]] = defaultdict(dict)
    scored = verdicts.filter(failed=False).order_by("item_id", "question", "baseline_side")
    for item_id, question, side, probabilities, mass, abstained in scored.values_list(
        "item_id", "question", "baseline_side", "probabilities", "option_mass", "abstained"
    ):
        bias[question].append(probabilities["A"] - probabilities["B"])
        answers[max(OPTIONS, key=probabilities.__getitem__)] += 1
        abstentions[question] += int(abstained)
        if mass is not None:
            masses[question].append(mass)
        orders[(item_id, question)][side] = probabilities
    flips: dict[str, list[bool]] = defaultdict(list)
    for (_, question), pair in orders.items():
        if set(pair) == {"A", "B"}:
            flips[question].append(pair_verdict(baseline_as_a=pair["A"], baseline_as_b=pair["B"]).flipped)
    choices: dict[str, Counter] = defaultdict(Counter)
    for question, choice in ratings.values_list("question", "choice"):
        choices[question][choice] += 1
    all_flips = [f for fs in flips.values() for f in fs]
    all_masses = [m for ms in masses.values() for m in ms]
    return {
        "run": run.name,
        "items": len(item_ids) if item_ids is not None else verdicts.values("item").distinct().count(),
        "verdicts": sum(len(b) for b in bias.values()),
        "failed": len(failed),
        "failures": [{"item": i, "question": q, "baseline_side": s, "error": e} for i, q, s, e in failed[:20]],
        "ratings": sum(sum(c.values()) for c in choices.values()),
        "consistency": {q: round(1 - sum(fs) / len(fs), 4) for q, fs in sorted(flips.items())},
        "consistency_overall": round(1 - sum(all_flips) / len(all_flips), 4) if all_flips else None,
        "pairs": len(all_flips),
        "consistent_pairs": len(all_flips) - sum(all_flips),
        "position_bias": {q: round(sum(b) / len(b), 4) for q, b in sorted(bias.items())},
        "choices": {q: dict(sorted(c.items())) for q, c in sorted(choices.items())},
        "min_option_mass": run.min_option_mass,
        "abstained": sum(abstentions.values()),
        "abstentions": {q: abstentions[q] for q in sorted(bias)},
        "option_mass": {q: round(median(ms), 4) for q, ms in sorted(masses.items())},
        "option_mass_median": round(median(all_masses), 4) if all_masses else None,
        "answers": dict(answers),
    }


def judge_run_reliability(*, run: JudgeRun, summary: dict) -> dict:
    """The run's reliability verdict (``judge.reliability.run_reliability``) from its summary."""
    return run_reliability(
        verdicts=summary["verdicts"], failed=summary["failed"], abstained=summary["abstained"], pairs=summary["pairs"],
        consistent_pairs=summary["consistent_pairs"], option_mass_median=summary["option_mass_median"], answers=summary["answers"],
        min_option_mass=run.min_option_mass,
    )
