"""When the judge abstains, and how far a whole run can be trusted (plain Python: no Django, no torch).

One home for both rules, read by the in-process scorer (``judge.scoring``), the run summary
(``judge.selectors``), the job page and the agreement report. See docs/judge.md.

Abstention. The judge's verdict comes from the next-token probabilities of the option letters
(A / B / S), renormalised over the three options. Renormalising hides how much of the model's
probability the options held at all (the *option mass*): SmolLM2-135M gives them about 10 %,
and a prompt where they get 3e-7 would otherwise become a confident "A". A verdict whose option
mass is below the run's ``min_option_mass`` is an abstention: kept with its probabilities for
audit, never a Rating.

Default 0.5: below it, the model more probably answers with something that is not an option
than with one of them, so the "verdict" is a guess about an answer the model would most likely
not give. An instruct model that follows "answer with a single letter" puts most of its
probability on the letters at the answer position, so it passes (not measured here: the paper's
judge, Qwen2.5-32B-Instruct, is not available offline); SmolLM2-135M falls far below (median
0.116 on SPC prompts, issue 16; 0.27 on the demo data, tests/judge/test_demo_judge.py).

Reliability. Each finished run gets a verdict, ``reliable``, ``warnings`` or ``unreliable``,
from thresholds on figures of its verdicts (each check keeps its figure and its reason):

- position consistency: share of (item, question) pairs whose two orders agree. MT-Bench
  (Zheng et al., 2023, Table 2) measured 65 % for GPT-4 and 46 % for GPT-3.5 on pairwise
  prompts; below 0.7 is a warning, below 0.5 the run mostly follows the position.
- option mass: the median over the run's verdicts; below ``min_option_mass`` most verdicts are
  abstentions (unreliable), below 0.8 the model often answers outside the options (warning).
- abstention rate: share of scored verdicts that abstained; above 5 % a warning, above 20 %
  what is left is a selected minority (unreliable).
- degenerate distribution: the share of the most frequent letter over all scored verdicts
  (both orders). With every pair shown both ways, a judge that reads the responses gives A and
  B alike; one letter above 95 % means the answer does not depend on the input (unreliable),
  above 80 % a warning.
- failures: share of prompts that could not be scored (too long, backend errors); any is a
  warning, above 20 % unreliable.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# The run setting's default (JudgeRun.min_option_mass); see the module docstring for why 0.5.
DEFAULT_MIN_OPTION_MASS = 0.5

RELIABLE, WARNINGS, UNRELIABLE = "reliable", "warnings", "unreliable"
LEVELS = (RELIABLE, WARNINGS, UNRELIABLE)  # in increasing severity


def min_option_mass_parse(value) -> float:
    """A run's minimum option mass from a form, command line or settings dict; raise ValueError when not in [0, 1]."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"min_option_mass must be a number from 0 to 1, got {value!r}") from None
    if not 0.0 <= number <= 1.0 or math.isnan(number):
        raise ValueError(f"min_option_mass must be from 0 to 1 (a share of probability), got {number}")
    return number


def verdict_abstains(*, option_mass: float | None, min_option_mass: float) -> bool:
    """Whether a verdict whose option letters held ``option_mass`` of the next-token probability abstains.

    ``option_mass``: the summed probability of every option token before renormalising (0-1);
    None when it was never measured (verdicts stored by hand or by an older version): those are
    not abstentions, since there is nothing to judge them by. The in-process scorer calls this
    per prompt; a server backend (scores from top log-probabilities) calls it the same way.
    """
    if option_mass is None:
        return False
    return not option_mass >= min_option_mass  # NaN abstains too


@dataclass(frozen=True)
class Check:
    """One reliability threshold: a figure of the run, the level it gives, and why."""

    name: str
    label: str
    warn: float
    fail: float
    higher_is_better: bool

    def level(self, figure: float) -> str:
        if self.higher_is_better:
            return UNRELIABLE if figure < self.fail else WARNINGS if figure < self.warn else RELIABLE
        return UNRELIABLE if figure > self.fail else WARNINGS if figure > self.warn else RELIABLE


POSITION_CONSISTENCY = Check("position_consistency", "position consistency", warn=0.7, fail=0.5, higher_is_better=True)
OPTION_MASS_WARN = 0.8  # the failing bound of the option-mass check is the run's own min_option_mass
ABSTENTION_RATE = Check("abstention_rate", "abstention rate", warn=0.05, fail=0.2, higher_is_better=False)
TOP_ANSWER_SHARE = Check("top_answer_share", "share of the most frequent answer", warn=0.8, fail=0.95,
                         higher_is_better=False)
FAILURE_RATE = Check("failure_rate", "failure rate", warn=0.0, fail=0.2, higher_is_better=False)


def _reason(check: Check, figure: float, level: str, detail: str = "") -> str:
    bound = check.fail if level == UNRELIABLE else check.warn
    side = "below" if check.higher_is_better else "above"
    text = f"{check.label} {figure:.3g} is {side} {bound:g}"
    return f"{text} ({detail})" if detail else text


def run_reliability(
    *,
    verdicts: int,
    failed: int,
    abstained: int,
    pairs: int,
    consistent_pairs: int,
    option_mass_median: float | None,
    answers: Mapping[str, int],
    min_option_mass: float,
) -> dict:
    """The reliability verdict of a run from counts of its verdicts.

    verdicts: scored (not failed) single-order verdicts, abstentions included; failed: prompts
    that could not be scored; abstained: scored verdicts below ``min_option_mass``; pairs /
    consistent_pairs: (item, question) pairs with both orders scored / whose two orders chose the
    same system; option_mass_median: median option mass of the scored verdicts that measured it
    (None: none did); answers: letter -> how many scored verdicts chose it (A / B / S as shown).

    Returns {"verdict": reliable | warnings | unreliable, "reasons": [...], "checks": {name:
    {"figure", "level", "warn", "fail", "reason"}}, "min_option_mass"}: a check that could not be
    measured (no pairs, no masses) is left out. Raises ValueError on inconsistent counts.
    """
    if min(verdicts, failed, abstained, pairs, consistent_pairs) < 0 or abstained > verdicts or consistent_pairs > pairs:
        raise ValueError(f"inconsistent counts: {verdicts=} {failed=} {abstained=} {pairs=} {consistent_pairs=}")
    checks: dict[str, dict] = {}

    def add(check: Check, figure: float, detail: str = "") -> None:
        level = check.level(figure)
        checks[check.name] = {"label": check.label, "figure": round(figure, 4), "level": level, "warn": check.warn,
                              "fail": check.fail, "reason": _reason(check, figure, level, detail) if level != RELIABLE else ""}

    if verdicts + failed == 0:
        return {"verdict": UNRELIABLE, "reasons": ["no verdict was scored"], "checks": {},
                "min_option_mass": min_option_mass}
    add(FAILURE_RATE, failed / (verdicts + failed), f"{failed} of {verdicts + failed} prompts")
    if verdicts:
        add(ABSTENTION_RATE, abstained / verdicts, f"{abstained} of {verdicts} verdicts")
        top, n = max(sorted(answers.items()), key=lambda kv: kv[1]) if answers else ("", 0)
        add(TOP_ANSWER_SHARE, n / verdicts, f"{n} of {verdicts} verdicts answered {top}")
    if pairs:
        add(POSITION_CONSISTENCY, consistent_pairs / pairs,
            f"{pairs - consistent_pairs} of {pairs} pairs changed with the order")
    if option_mass_median is not None:
        add(Check("option_mass", "median option mass", warn=max(OPTION_MASS_WARN, min_option_mass),
                  fail=min_option_mass, higher_is_better=True), option_mass_median,
            "the probability the model gave the option letters before renormalising")
    if not verdicts:
        checks_level = UNRELIABLE
        reasons = ["every prompt failed"]
    else:
        checks_level = max((c["level"] for c in checks.values()), key=LEVELS.index, default=RELIABLE)
        reasons = []
    reasons += [c["reason"] for level in (UNRELIABLE, WARNINGS) for c in checks.values() if c["level"] == level]
    return {"verdict": checks_level, "reasons": reasons, "checks": checks, "min_option_mass": min_option_mass}


def reliability_label(reliability: Mapping | None) -> str:
    """A short line for pages and exports: "unreliable: reason; reason", "reliable", or "" when not assessed."""
    if not reliability:
        return ""
    verdict = reliability.get("verdict", "")
    reasons = reliability.get("reasons") or []
    return f"{verdict}: {'; '.join(reasons)}" if reasons and verdict != RELIABLE else verdict
