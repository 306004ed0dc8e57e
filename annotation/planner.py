"""Studies sized before they run: items and raters to detect a win-rate gap (numpy/statsmodels, no Django).

The report tests the challenger's share w of the decisive labels against 1/2 (a sign test,
ties left out). The gap g = w - (1 - w) = 2w - 1 is how far the challenger leads among
decisive labels. The power is the normal approximation on Cohen's arcsine effect size
h = 2 asin(sqrt(w)) - 2 asin(sqrt(1/2)) (Cohen 1988, "Statistical power analysis for the
behavioral sciences", ch. 6), through statsmodels' ``NormalIndPower`` with ``ratio=0``
(one sample). A share ``tie_share`` of labelled items is "similar" and carries no
information about w, and a share of items gets no label (no majority or low confidence).
"""
from __future__ import annotations

import math

from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

POWER = 0.8
ALPHA = 0.05
_HALF = math.asin(math.sqrt(0.5))


def _check(name: str, value: float, low: float, high: float, *, low_open=False, high_open=False) -> float:
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if math.isnan(value) or below or above:
        brackets = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {brackets}, got {value}")
    return value


def decisive_needed(*, gap: float, power: float = POWER, alpha: float = ALPHA) -> int:
    """Decisive (non-similar) labels needed to detect ``gap`` (2w - 1, in (0, 1)) with a two-sided test."""
    gap = _check("gap", gap, 0, 1, low_open=True, high_open=True)
    effect = proportion_effectsize(0.5 + gap / 2, 0.5)
    n = NormalIndPower().solve_power(effect_size=effect, nobs1=None, alpha=alpha, power=power, ratio=0,
                                     alternative="two-sided")
    return math.ceil(float(n))


def study_plan(*, gap: float, tie_share: float, overlap: int = 3, labelled_share: float = 0.9,
               items_per_rater: int = 200, power: float = POWER, alpha: float = ALPHA) -> dict:
    """Items and raters needed to detect a win-rate gap ``gap`` at ``power`` and ``alpha``.

    gap: 2w - 1 among decisive labels, in (0, 1); tie_share: expected share of "similar" labels
    in [0, 1); overlap: raters per item; labelled_share: expected share of items that get a
    majority label, in (0, 1]; items_per_rater: how many items one rater can do.
    Returns decisive labels, items, ratings and raters needed. Raises ValueError on inputs out of range.
    """
    tie_share = _check("tie_share", tie_share, 0, 1, high_open=True)
    labelled_share = _check("labelled_share", labelled_share, 0, 1, low_open=True)
    if int(overlap) < 1 or int(items_per_rater) < 1:
        raise ValueError(f"overlap and items_per_rater must be at least 1, got {overlap} and {items_per_rater}")
    decisive = decisive_needed(gap=gap, power=power, alpha=alpha)
    items = math.ceil(decisive / ((1 - tie_share) * labelled_share))
    ratings = items * int(overlap)
    return {
        "gap": gap, "win_rate": 0.5 + gap / 2, "tie_share": tie_share, "labelled_share": labelled_share,
        "power": power, "alpha": alpha, "overlap": int(overlap), "items_per_rater": int(items_per_rater),
        "decisive": decisive, "items": items, "ratings": ratings,
        "raters": max(int(overlap), math.ceil(ratings / int(items_per_rater))),
    }


def smallest_detectable_gap(*, decisive: int, power: float = POWER, alpha: float = ALPHA) -> float | None:
    """The smallest gap 2w - 1 that ``decisive`` labels detect at ``power`` and ``alpha`` (None under 2 labels or beyond 1)."""
    if decisive < 2:
        return None
    effect = float(NormalIndPower().solve_power(effect_size=None, nobs1=decisive, alpha=alpha, power=power, ratio=0,
                                                alternative="two-sided"))
    angle = _HALF + effect / 2
    if angle >= math.pi / 2:
        return None
    return 2 * math.sin(angle) ** 2 - 1
