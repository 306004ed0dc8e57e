"""Agreement and preference statistics, each a thin call into a maintained package.

Plain numpy in, plain Python numbers out (None where a statistic is undefined, e.g. kappa
when every rating is the same), so the report serialises to JSON without NaN.
"""
from __future__ import annotations

import math

import krippendorff
import numpy as np
from scipy.stats import binomtest
from statsmodels.stats.inter_rater import cohens_kappa as _statsmodels_cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as _statsmodels_fleiss_kappa

BOOTSTRAP_RESAMPLES = 10_000


def _number(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def fleiss_kappa(*, counts: np.ndarray) -> float | None:
    """Fleiss' kappa of a subjects x categories table of counts (every row the same number of raters)."""
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return _number(_statsmodels_fleiss_kappa(counts, method="fleiss"))


def krippendorff_alpha(*, reliability_data: np.ndarray, level: str, value_domain=None) -> float | None:
    """Krippendorff's alpha of a raters x units array with NaN for missing ratings."""
    data = np.asarray(reliability_data, dtype=float)
    if data.size == 0 or np.count_nonzero(~np.isnan(data)) < 2:
        return None
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            return _number(krippendorff.alpha(reliability_data=data, level_of_measurement=level, value_domain=value_domain))
    except ValueError:  # fewer than two distinct values, or no unit with two ratings: undefined
        return None


def percent_agreement(*, counts: np.ndarray) -> float | None:
    """Mean share of agreeing rater pairs per subject (Fleiss' P-bar), over subjects with 2+ ratings."""
    counts = np.asarray(counts, dtype=float)
    if counts.size == 0:
        return None
    n = counts.sum(axis=1)
    counts = counts[n >= 2]
    n = n[n >= 2]
    if len(n) == 0:
        return None
    return _number(((counts * (counts - 1)).sum(axis=1) / (n * (n - 1))).mean())


def win_rate(*, wins: int, losses: int, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Challenger's share of the decisive labels, a 95% percentile bootstrap interval and a sign test.

    Resampling n decisive labels with replacement and counting wins is exactly a draw from
    Binomial(n, wins/n), so the bootstrap is drawn that way: same distribution, no n x B array.
    Similar labels are ties and, as in any sign test, left out.
    """
    n = wins + losses
    if n == 0:
        return {"challenger": None, "ci95": [None, None], "sign_test_p": None, "decisive": 0, "wins": 0, "losses": 0}
    rng = np.random.default_rng(seed)
    shares = rng.binomial(n, wins / n, size=resamples) / n
    low, high = np.percentile(shares, [2.5, 97.5])
    return {
        "challenger": wins / n,
        "ci95": [float(low), float(high)],
        "sign_test_p": float(binomtest(wins, n, 0.5, alternative="two-sided").pvalue),
        "decisive": n,
        "wins": wins,
        "losses": losses,
    }


def cohen_kappa(*, confusion: np.ndarray) -> float | None:
    """Cohen's kappa of a square confusion table (rows one rater, columns the other)."""
    confusion = np.asarray(confusion, dtype=float)
    if confusion.sum() == 0:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return _number(_statsmodels_cohens_kappa(confusion, return_results=False))
