"""Systems ranked across studies by Bradley-Terry strengths with bootstrap intervals (numpy + choix, no Django).

Bradley & Terry (1952), "Rank analysis of incomplete block designs: I. The method of paired
comparisons", Biometrika 39:324-345: P(i beats j) = exp(b_i) / (exp(b_i) + exp(b_j)). Each
study compares one baseline with one challenger; pooling the studies' decisive labels gives a
comparison graph over every system, and the maximum-likelihood strengths come from choix's
iterative Luce spectral ranking (Maystre & Grossglauser 2015, ``choix.ilsr_pairwise_dense``).

Tie rule: a "similar" label is left out, as in the report's sign test: it says nothing about
which system is better. A small regularisation (``REGULARISATION``, choix's ``alpha``) keeps
strengths finite when a system never lost. Strengths are log-odds, centred at mean 0, so
they compare only within one ranking (one question, one rater group).

Intervals: items are resampled with replacement within each study (a study's items are its
units), as counts: a study with w wins, l losses and t ties is redrawn as
Multinomial(w + l + t; w, l, t shares), which is the same distribution as resampling its items.
"""
from __future__ import annotations

import choix
import numpy as np

RANKING_RESAMPLES = 1_000
REGULARISATION = 0.01
TIE_RULE = ("'similar' labels are left out (as in the sign test); strengths are Bradley-Terry log-odds from the "
            "decisive labels, with choix's regularisation alpha=0.01 so that a system that never lost stays finite")


def bt_strengths(*, wins: np.ndarray, initial: np.ndarray | None = None) -> np.ndarray:
    """Bradley-Terry log-strengths of k systems from a k x k matrix, wins[i, j] = times i beat j (choix)."""
    wins = np.asarray(wins, dtype=float)
    if wins.ndim != 2 or wins.shape[0] != wins.shape[1]:
        raise ValueError(f"wins must be a square matrix, got shape {wins.shape}")
    if (wins < 0).any():
        raise ValueError("wins must be non-negative counts")
    return np.asarray(choix.ilsr_pairwise_dense(wins, alpha=REGULARISATION, initial_params=initial), dtype=float)


def _wins_matrix(k: int, first: np.ndarray, second: np.ndarray, first_wins: np.ndarray, second_wins: np.ndarray) -> np.ndarray:
    wins = np.zeros((k, k))
    np.add.at(wins, (first, second), first_wins)
    np.add.at(wins, (second, first), second_wins)
    return wins


def bt_ranking(*, systems: list[str], comparisons: list[tuple[int, int, int, int, int]],
               resamples: int = RANKING_RESAMPLES, seed: int = 0) -> list[dict]:
    """Rank ``systems`` from per-study counts, with 95% percentile bootstrap intervals of strength and rank.

    comparisons: one (baseline index, challenger index, baseline wins, challenger wins, ties) per study.
    Returns one row per system, best first: system, strength, ci95, rank (1 = best), rank_ci95,
    decisive (labels that involved it). Raises ValueError on indices outside ``systems``.
    """
    k = len(systems)
    if not comparisons or k == 0:
        return []
    table = np.array(comparisons, dtype=np.int64).reshape(-1, 5)
    if table[:, :2].min() < 0 or table[:, :2].max() >= k:
        raise ValueError(f"system indices must be in 0..{k - 1}")
    first, second = table[:, 0], table[:, 1]
    point = bt_strengths(wins=_wins_matrix(k, first, second, table[:, 2], table[:, 3]))
    rng = np.random.default_rng(seed)
    totals = table[:, 2:].sum(axis=1)
    shares = np.where(totals[:, None] > 0, table[:, 2:] / np.maximum(totals, 1)[:, None], 0.0)
    draws = np.stack([rng.multinomial(n, p, size=resamples) if n else np.zeros((resamples, 3), dtype=np.int64)
                      for n, p in zip(totals, shares)], axis=1)  # resamples x studies x (b wins, c wins, ties)
    boot = np.empty((resamples, k))
    for b in range(resamples):
        boot[b] = bt_strengths(wins=_wins_matrix(k, first, second, draws[b, :, 0], draws[b, :, 1]), initial=point)
    ranks = (-boot).argsort(axis=1).argsort(axis=1) + 1
    point_rank = (-point).argsort().argsort() + 1
    decisive = np.bincount(first, weights=table[:, 2] + table[:, 3], minlength=k) + np.bincount(
        second, weights=table[:, 2] + table[:, 3], minlength=k)
    rows = [
        {"system": systems[i], "strength": float(point[i]),
         "ci95": [float(v) for v in np.percentile(boot[:, i], [2.5, 97.5])],
         "rank": int(point_rank[i]), "rank_ci95": [int(v) for v in np.percentile(ranks[:, i], [2.5, 97.5], method="nearest")],
         "decisive": int(decisive[i])}
        for i in range(k)
    ]
    return sorted(rows, key=lambda row: row["rank"])
