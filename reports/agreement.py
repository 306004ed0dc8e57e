"""Agreement that survives a dominant category, and bootstrap intervals over items (numpy only, no Django).

Pairwise studies are mostly "similar". Fleiss' kappa and Krippendorff's alpha then collapse
even when raters agree (the "kappa paradox", Feinstein & Cicchetti 1990): their chance
agreement is computed from the pooled label shares, which approach 1 for one category.
Gwet's AC1 (Gwet 2008, "Computing inter-rater reliability and its variance in the presence
of high agreement", Br. J. Math. Stat. Psychol. 61:29-48) uses a chance agreement that
falls as one category dominates, and the prevalence and bias indices (Byrt, Bishop &
Carlin 1993, J. Clin. Epidemiol. 46:423-429) show why the two disagree.

Every function takes a subjects (items) x categories table of counts, the same table Fleiss'
kappa takes, so the bootstrap can resample items by weighting rows: a resample is a row of
``bootstrap_weights`` (how many times each item was drawn), and every statistic is a ratio of
weighted sums, so B resamples cost one (B x items) @ (items x k) product each.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

# Resamples of the items for every bootstrap interval of an agreement coefficient. Each is a
# weighted sum over items, so 1,000 keep a whole report under the 2 s the issue asks for.
AGREEMENT_RESAMPLES = 1_000
# Fewest items with ratings for which a report gives item-bootstrap intervals. Below it the
# percentile bootstrap draws from so few distinct resamples that its interval is far too narrow
# (with 1 item every resample is that item: a zero-width "interval"); the report says the intervals
# are withheld instead of printing them (Efron & Tibshirani 1993, ch. 13; review finding).
INTERVAL_MIN_ITEMS = 10
# A category holding at least this share of all ratings makes the report warn about the kappa paradox.
DOMINANT_SHARE = 0.6


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def percentile_interval(values: np.ndarray, *, level: float = 0.95) -> list[float | None]:
    """[low, high] percentile interval of the finite bootstrap ``values``; [None, None] when fewer than 2."""
    values = _finite(np.asarray(values, dtype=float))
    if len(values) < 2:
        return [None, None]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_weights(*, n_items: int, resamples: int, seed: int) -> np.ndarray:
    """resamples x n_items counts (float64, read-only): how often each item is drawn in each resample.

    Seeded, so the same (n_items, resamples, seed) always gives the same resamples; cached, because
    a report resamples the same items for every question and statistic (one joint bootstrap of items).
    """
    return _bootstrap_weights(int(n_items), int(resamples), int(seed))


@lru_cache(maxsize=16)
def _bootstrap_weights(n_items: int, resamples: int, seed: int) -> np.ndarray:
    if n_items <= 0:
        weights = np.zeros((resamples, 0))
    else:
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, n_items, size=(resamples, n_items), dtype=np.int32)
        flat = (np.arange(resamples, dtype=np.int64)[:, None] * n_items + draws).ravel()
        weights = np.bincount(flat, minlength=resamples * n_items).reshape(resamples, n_items).astype(float)
    weights.flags.writeable = False
    return weights


def _weights(counts: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    return np.ones((1, counts.shape[0])) if weights is None else np.asarray(weights, dtype=float)


# Each statistic is split into per-item columns and a finish from their weighted sums, so that
# several statistics share one pass over the (resamples x items) weights: on a busy machine the
# product is bound by reading the weights from memory, not by arithmetic.

def _fleiss_columns(counts: np.ndarray) -> np.ndarray:
    n = counts.sum(axis=1)
    per_item = np.where(n > 1, (counts * (counts - 1)).sum(axis=1) / np.where(n > 1, n * (n - 1), 1), 0.0)
    return np.column_stack([np.ones(len(counts)), per_item, counts])


def _fleiss_finish(sums: np.ndarray) -> np.ndarray:
    items, p_bar = sums[:, 0], sums[:, 1] / sums[:, 0]
    totals = sums[:, 2:]
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = totals / totals.sum(axis=1, keepdims=True)
        p_e = (shares**2).sum(axis=1)
        return np.where(items > 0, (p_bar - p_e) / (1 - p_e), np.nan)


def fleiss_kappa_weighted(*, counts: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Fleiss' kappa (Fleiss 1971) of items x categories ``counts`` (same raters per item) per row of ``weights``.

    ``weights``: resamples x items (``bootstrap_weights``); None gives the one plain estimate
    (shape (1,)), equal to statsmodels' ``fleiss_kappa``. NaN where undefined (Pe = 1).
    """
    counts = np.asarray(counts, dtype=float)
    return _fleiss_finish(_weights(counts, weights) @ _fleiss_columns(counts))


def _ac1_columns(counts: np.ndarray) -> np.ndarray:
    r = counts.sum(axis=1)
    rated, pairs = r >= 1, r >= 2
    agree = np.where(pairs, (counts * (counts - 1)).sum(axis=1) / np.where(pairs, r * (r - 1), 1), 0.0)
    propensity = np.where(rated[:, None], counts / np.where(rated, r, 1)[:, None], 0.0)
    return np.column_stack([agree, pairs, rated, propensity])


def _ac1_finish(sums: np.ndarray) -> np.ndarray:
    q = sums.shape[1] - 3
    with np.errstate(divide="ignore", invalid="ignore"):
        p_a = sums[:, 0] / sums[:, 1]
        propensity = sums[:, 3:] / sums[:, 2:3]
        p_e = (propensity * (1 - propensity)).sum(axis=1) / (q - 1)
        return (p_a - p_e) / (1 - p_e)


def gwet_ac1_weighted(*, counts: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Gwet's AC1 (Gwet 2008, eq. 7-8 with identity weights) per row of ``weights``; raters may vary per item.

    counts: items x q categories, ratings per item and category (q = every category of the
    scale, also those nobody chose). Percent agreement pa over the items with 2+ ratings,
    category propensities pi_k = mean over items of r_ik / r_i, chance agreement
    pe = sum_k pi_k (1 - pi_k) / (q - 1), AC1 = (pa - pe) / (1 - pe). Equals irrCAC's
    ``raw.CAC(...).gwet()`` with the same categories. NaN where undefined.
    """
    counts = np.asarray(counts, dtype=float)
    return _ac1_finish(_weights(counts, weights) @ _ac1_columns(counts))


def _coincidences(counts: np.ndarray) -> np.ndarray:
    """items x (q*q) coincidence contributions of Krippendorff's alpha (units with 2+ values only)."""
    m = counts.sum(axis=1)
    pairable = m >= 2
    outer = counts[:, :, None] * counts[:, None, :] - counts[:, :, None] * np.eye(counts.shape[1])[None]
    return np.where(pairable[:, None, None], outer / np.where(pairable, m - 1, 1)[:, None, None], 0.0).reshape(
        len(counts), -1)


def _alpha_finish(coincidence_sums: np.ndarray, level: str) -> np.ndarray:
    if level not in ("nominal", "ordinal"):
        raise ValueError(f"level must be 'nominal' or 'ordinal', got {level!r}")
    b = len(coincidence_sums)
    q = round(np.sqrt(coincidence_sums.shape[1]))
    o = coincidence_sums.reshape(b, q, q)
    n_c = o.sum(axis=2)
    n = n_c.sum(axis=1)
    if level == "nominal":
        delta = np.broadcast_to(1.0 - np.eye(q), (b, q, q))
    else:
        # d_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 for c <= k, symmetric
        cumulative = np.concatenate([np.zeros((b, 1)), np.cumsum(n_c, axis=1)], axis=1)
        low = np.minimum.outer(np.arange(q), np.arange(q))
        high = np.maximum.outer(np.arange(q), np.arange(q))
        between = cumulative[:, high + 1] - cumulative[:, low]
        delta = (between - (n_c[:, :, None] + n_c[:, None, :]) / 2) ** 2
    observed = (o * delta).sum(axis=(1, 2))
    expected = (n_c[:, :, None] * n_c[:, None, :] * delta).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1 - (n - 1) * observed / expected


def krippendorff_alpha_weighted(*, counts: np.ndarray, level: str, weights: np.ndarray | None = None) -> np.ndarray:
    """Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's alpha-reliability") per row of ``weights``.

    counts: units x values, ratings per unit and value (values in their order for "ordinal").
    Built from the coincidence matrix o_ck and the value totals n_c of the resample:
    alpha = 1 - (n - 1) sum o_ck d_ck / sum n_c n_k d_ck, with the nominal or ordinal metric.
    Equals the ``krippendorff`` package on the same data. NaN where undefined.
    """
    counts = np.asarray(counts, dtype=float)
    return _alpha_finish(_weights(counts, weights) @ _coincidences(counts), level)


def agreement_resampled(*, counts: np.ndarray, weights: np.ndarray, ordinal_order, fleiss: bool) -> dict[str, np.ndarray]:
    """AC1, Krippendorff's nominal and ordinal alpha and (``fleiss``) Fleiss' kappa per row of ``weights``, in one pass.

    counts: items x q; ordinal_order: the column indices of ``counts`` in the ordinal order; fleiss:
    every item has the same number of ratings (else call ``fleiss_kappa_weighted`` on those that do).
    The same numbers as the single-statistic functions above.
    """
    counts = np.asarray(counts, dtype=float)
    q = counts.shape[1]
    order = np.asarray(ordinal_order)
    blocks = [_ac1_columns(counts), _coincidences(counts)] + ([_fleiss_columns(counts)] if fleiss else [])
    sums = np.asarray(weights, dtype=float) @ np.column_stack(blocks)
    ac1, coincidences = sums[:, : q + 3], sums[:, q + 3: q + 3 + q * q]
    ordinal = coincidences.reshape(-1, q, q)[:, order][:, :, order].reshape(-1, q * q)
    out = {"gwet_ac1": _ac1_finish(ac1), "krippendorff_alpha": _alpha_finish(coincidences, "nominal"),
           "krippendorff_alpha_ordinal": _alpha_finish(ordinal, "ordinal")}
    if fleiss:
        out["fleiss_kappa"] = _fleiss_finish(sums[:, q + 3 + q * q:])
    return out


def prevalence_index(*, counts: np.ndarray) -> float | None:
    """How much one category dominates: the top category's share minus the mean share of the others.

    For two categories and two raters this is Byrt, Bishop & Carlin's (1993) |a - d| / n (the
    two categories' mean marginal shares differ by exactly that); it is 0 when the categories
    are used equally and 1 when every rating is one category. Shares are pooled over ratings.
    """
    totals = np.asarray(counts, dtype=float).sum(axis=0)
    if totals.sum() == 0 or len(totals) < 2:
        return None
    shares = np.sort(totals / totals.sum())[::-1]
    return float(shares[0] - shares[1:].mean())


def bias_index(*, rater_counts: np.ndarray) -> float | None:
    """How differently the raters use the categories: the ratings-weighted mean over raters of
    sum_k |p_rk - p_k| (rater r's share of category k against the pooled share).

    rater_counts: raters x categories, each rater's ratings per category. For two raters and two
    categories this is Byrt, Bishop & Carlin's (1993) |b - c| / n; 0 when every rater has the
    same shares. Unlike kappa it needs no rater to rate every item.
    """
    rater_counts = np.asarray(rater_counts, dtype=float)
    per_rater = rater_counts.sum(axis=1)
    keep = per_rater > 0
    if keep.sum() < 2:
        return None
    rater_counts, per_rater = rater_counts[keep], per_rater[keep]
    pooled = rater_counts.sum(axis=0) / per_rater.sum()
    distance = np.abs(rater_counts / per_rater[:, None] - pooled).sum(axis=1)
    return float((distance * per_rater).sum() / per_rater.sum())


def dominant_category(*, counts: np.ndarray, labels, threshold: float = DOMINANT_SHARE) -> dict | None:
    """{"label", "share"} of the category holding at least ``threshold`` of all ratings, else None."""
    totals = np.asarray(counts, dtype=float).sum(axis=0)
    if totals.sum() == 0:
        return None
    top = int(totals.argmax())
    share = float(totals[top] / totals.sum())
    return {"label": labels[top], "share": share} if share >= threshold else None


def cohen_kappa_weighted(*, first: np.ndarray, second: np.ndarray, q: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Cohen's kappa (Cohen 1960) of two raters' codes 0..q-1 on the same items, per row of ``weights``.

    Equals scikit-learn's ``cohen_kappa_score`` and statsmodels' ``cohens_kappa`` on the plain data.
    """
    first = np.asarray(first, dtype=np.int64)
    second = np.asarray(second, dtype=np.int64)
    cells = np.zeros((len(first), q * q))
    cells[np.arange(len(first)), first * q + second] = 1.0
    w = np.ones((1, len(first))) if weights is None else np.asarray(weights, dtype=float)
    confusion = (w @ cells).reshape(len(w), q, q)
    total = confusion.sum(axis=(1, 2))
    observed = np.trace(confusion, axis1=1, axis2=2) / total
    expected = (confusion.sum(axis=2) * confusion.sum(axis=1)).sum(axis=1) / total**2
    with np.errstate(divide="ignore", invalid="ignore"):
        return (observed - expected) / (1 - expected)


def number(value) -> float | None:
    """A float for JSON, None for NaN or infinity."""
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value
