"""Human and judge labels combined: prediction-powered inference (numpy only, no Django).

Angelopoulos, Bates, Fannjiang, Jordan & Zrnic (2023), "Prediction-powered inference",
Science 382:669-674, and its power-tuned form PPI++ (Angelopoulos, Duchi & Zrnic 2023,
arXiv:2311.01453), through the authors' package ``ppi_py``. The human majority label is the
gold label Y on the n items that have both a human and a judge label; the judge's label is the
prediction Yhat on those items and on the N items only the judge labelled. The estimate is the
judge's mean on the N items corrected by the mean human-minus-judge difference on the n, and
its interval is valid whatever the judge's quality: a poor judge only widens it (power tuning
then shrinks the judge's weight lambda towards 0, the human-only interval).

Validity assumes the n doubly labelled items are a random sample of all n + N items (true when
the human study is a random subset of the items the judge rated, as in the paper's 145 of
2,145 turns; not when humans chose which items to label).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm

# ppi_py is imported where it is used: it pulls scikit-learn and numba, a few seconds that every
# Django process (the report modules load with the URLs) would otherwise pay at start.

ALPHA = 0.05  # 95% intervals
MIN_LABELLED = 2  # a standard deviation needs two labels


def _one_hot(codes: np.ndarray, q: int) -> np.ndarray:
    out = np.zeros((len(codes), q))
    out[np.arange(len(codes)), np.asarray(codes, dtype=np.int64)] = 1.0
    return out


def _interval(low, high) -> list[float]:
    return [float(np.asarray(low).ravel()[0]), float(np.asarray(high).ravel()[0])]


def classical_share(*, codes: np.ndarray, q: int, alpha: float = ALPHA) -> dict:
    """Each category's share of ``codes`` (0..q-1) with its CLT interval (``ppi_py.classical_mean_ci``).

    Returns {"share": [q floats], "ci95": [[low, high] x q], "n": n}; shares None below 2 labels.
    """
    from ppi_py import classical_mean_ci

    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) < MIN_LABELLED:
        return {"share": [None] * q, "ci95": [[None, None]] * q, "n": len(codes)}
    y = _one_hot(codes, q)
    cis = [_interval(*classical_mean_ci(y[:, k], alpha=alpha)) for k in range(q)]
    return {"share": [float(v) for v in y.mean(axis=0)], "ci95": cis, "n": len(codes)}


def _win_influence(y: np.ndarray, challenger: int, baseline: int, p_c: float, p_b: float) -> np.ndarray:
    """Delta-method linearisation of w = p_c / (p_c + p_b): grad(w) . (1[challenger], 1[baseline])."""
    decisive = p_c + p_b
    return (p_b * y[:, challenger] - p_c * y[:, baseline]) / decisive**2


def win_rate_classical(*, codes: np.ndarray, q: int, challenger: int, baseline: int, alpha: float = ALPHA) -> dict:
    """The challenger's share of decisive labels with a delta-method CLT interval (to set beside PPI's)."""
    from ppi_py import classical_mean_ci

    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) < MIN_LABELLED:
        return {"challenger": None, "ci95": [None, None], "se": None}
    y = _one_hot(codes, q)
    p_c, p_b = float(y[:, challenger].mean()), float(y[:, baseline].mean())
    if p_c + p_b == 0:
        return {"challenger": None, "ci95": [None, None], "se": None}
    win = p_c / (p_c + p_b)
    psi = _win_influence(y, challenger, baseline, p_c, p_b)
    low, high = classical_mean_ci(psi, alpha=alpha)
    centre = float(psi.mean())
    return {"challenger": win, "ci95": [win + float(low) - centre, win + float(high) - centre],
            "se": float(psi.std() / np.sqrt(len(psi)))}


def ppi_shares_and_win_rate(
    *, human: np.ndarray, judge_on_human: np.ndarray, judge_only: np.ndarray, q: int, challenger: int, baseline: int,
    alpha: float = ALPHA,
) -> dict:
    """Prediction-powered shares of each category and the challenger's win rate among decisive labels.

    human, judge_on_human: codes 0..q-1 of the n items with both labels (same order);
    judge_only: codes of the N items only the judge labelled. Shares: ``ppi_mean_ci`` on one-hot
    labels (power-tuned lambda, one for all categories). Win rate w = p_c / (p_c + p_b) from the
    PPI shares; its interval is ``ppi_mean_ci`` of the delta-method linearisation
    psi = grad(w) . (1[challenger], 1[baseline]) shifted to w. ``effective_human_labels`` is
    n * (se of the human-only win rate on those n / se of the PPI win rate)^2: how many human
    labels alone would give an interval as narrow; ``judge_worth`` is that minus n.
    Raises ValueError when the arrays' lengths or codes do not fit.
    """
    from ppi_py import ppi_mean_ci, ppi_mean_pointestimate

    human = np.asarray(human, dtype=np.int64)
    judge_on_human = np.asarray(judge_on_human, dtype=np.int64)
    judge_only = np.asarray(judge_only, dtype=np.int64)
    if human.shape != judge_on_human.shape:
        raise ValueError(f"human and judge_on_human must label the same items, got {human.shape} and {judge_on_human.shape}")
    for name, codes in (("human", human), ("judge_on_human", judge_on_human), ("judge_only", judge_only)):
        if len(codes) and (codes.min() < 0 or codes.max() >= q):
            raise ValueError(f"{name} holds codes outside 0..{q - 1}")
    n, big_n = len(human), len(judge_only)
    empty = {"labelled": n, "judge_only": big_n, "share": [None] * q, "ci95": [[None, None]] * q,
             "win_rate": {"challenger": None, "ci95": [None, None], "se": None},
             "effective_human_labels": None, "judge_worth": None}
    if n < MIN_LABELLED or big_n < MIN_LABELLED:
        return empty
    y, yhat, yhat_unlabelled = _one_hot(human, q), _one_hot(judge_on_human, q), _one_hot(judge_only, q)
    low, high = ppi_mean_ci(y, yhat, yhat_unlabelled, alpha=alpha)
    shares = np.asarray(ppi_mean_pointestimate(y, yhat, yhat_unlabelled), dtype=float).ravel()
    result = {**empty, "share": [float(v) for v in shares],
              "ci95": [[float(a), float(b)] for a, b in zip(np.ravel(low), np.ravel(high))]}
    p_c, p_b = float(shares[challenger]), float(shares[baseline])
    if p_c + p_b <= 0:
        return result
    win = p_c / (p_c + p_b)
    psi, psi_hat, psi_unlabelled = (_win_influence(a, challenger, baseline, p_c, p_b) for a in (y, yhat, yhat_unlabelled))
    low, high = ppi_mean_ci(psi, psi_hat, psi_unlabelled, alpha=alpha)
    centre = float(np.asarray(ppi_mean_pointestimate(psi, psi_hat, psi_unlabelled)).ravel()[0])
    low, high = float(np.ravel(low)[0]), float(np.ravel(high)[0])
    se_ppi = (high - low) / (2 * norm.ppf(1 - alpha / 2))
    se_human = float(psi.std() / np.sqrt(n))
    effective = n * (se_human / se_ppi) ** 2 if se_ppi > 0 else None
    result["win_rate"] = {"challenger": win, "ci95": [win + low - centre, win + high - centre], "se": se_ppi}
    result["effective_human_labels"] = effective
    result["judge_worth"] = None if effective is None else effective - n
    return result
