"""Judge audit: the known biases of an LLM judge, measured on its own verdicts (numpy only, no Django).

Zheng et al. (2023), "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena" (NeurIPS),
name three: position bias (the first-shown answer wins more often), verbosity bias (the
longer answer wins more often) and self-enhancement bias (a judge favours its own model
family). Panickssery et al. (2024), "LLM evaluators recognize and favor their own
generations", measure the last. Calibration against the human majority is the reliability
diagram and expected calibration error of Guo et al. (2017), "On calibration of modern
neural networks" (ICML), with scikit-learn's ``calibration_curve`` bins.
"""
from __future__ import annotations

import re

import numpy as np
from statsmodels.stats.proportion import proportion_confint

CALIBRATION_BINS = 5  # with a few hundred compared items, 5 bins keep each bin's share readable
# Model families by the names their checkpoints and servers use (lowercase substrings).
MODEL_FAMILIES = ("smollm", "llama", "qwen", "mistral", "mixtral", "gemma", "phi", "gpt", "claude", "deepseek",
                  "olmo", "falcon", "bart", "t5", "opt", "pythia")


def proportion(*, successes: int, trials: int) -> dict:
    """successes / trials with its 95% Wilson interval (statsmodels ``proportion_confint``); None when no trials."""
    if trials == 0:
        return {"share": None, "ci95": [None, None], "n": 0}
    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    return {"share": successes / trials, "ci95": [float(low), float(high)], "n": int(trials)}


def first_position_preference(*, orders_first: np.ndarray) -> dict:
    """Share of decisive single-order verdicts that chose the response shown first (A), with its interval.

    orders_first: one entry per (item, question, order) verdict: 1 chose the first-shown response,
    0 the second, -1 "similar" (left out). 0.5 means no position preference.
    """
    orders_first = np.asarray(orders_first, dtype=np.int64)
    decisive = orders_first[orders_first >= 0]
    return proportion(successes=int(decisive.sum()), trials=len(decisive))


def length_preference(*, chose_challenger: np.ndarray, challenger_longer: np.ndarray) -> dict:
    """Share of decisive verdicts that pick the longer response, with its interval.

    chose_challenger: 1 challenger, 0 baseline, per decisive verdict; challenger_longer: 1 when the
    challenger's response is longer, 0 when shorter, -1 equal (left out). 0.5 means no length
    preference; a share well above it is the verbosity bias (Zheng et al. 2023) or a real
    preference for more content: compare with the human majority's share on the same items.
    """
    chose_challenger = np.asarray(chose_challenger, dtype=np.int64)
    challenger_longer = np.asarray(challenger_longer, dtype=np.int64)
    keep = challenger_longer >= 0
    longer = chose_challenger[keep] == challenger_longer[keep]
    return proportion(successes=int(longer.sum()), trials=int(keep.sum()))


def calibration(*, confidence: np.ndarray, correct: np.ndarray, n_bins: int = CALIBRATION_BINS) -> dict:
    """Reliability curve and expected calibration error of the judge's probability for its own choice.

    confidence: the judge's probability of the option it chose (in [1/3, 1] for three options);
    correct: 1 when the human majority chose the same option. Bins are scikit-learn's
    ``calibration_curve(strategy="uniform")`` bins; ECE = sum over bins of
    (items in bin / items) * |share correct - mean confidence| (Guo et al. 2017).
    """
    # Imported here, not with the module: scikit-learn takes a second to load.
    from sklearn.calibration import calibration_curve

    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=np.int64)
    if len(confidence) == 0:
        return {"bins": [], "ece": None, "n": 0}
    if correct.min() == correct.max():
        # calibration_curve needs both outcomes; with one, every bin's share correct is that outcome.
        prob_true = prob_pred = None
    else:
        prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=n_bins, strategy="uniform")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_ids = np.searchsorted(edges[1:-1], confidence)  # the binning calibration_curve uses
    n_in = np.bincount(bin_ids, minlength=n_bins)
    sum_true = np.bincount(bin_ids, weights=correct, minlength=n_bins)
    sum_pred = np.bincount(bin_ids, weights=confidence, minlength=n_bins)
    nonzero = n_in > 0
    share_true = sum_true[nonzero] / n_in[nonzero]
    mean_pred = sum_pred[nonzero] / n_in[nonzero]
    if prob_true is not None and not (np.allclose(prob_true, share_true) and np.allclose(prob_pred, mean_pred)):
        raise RuntimeError("calibration bins differ from scikit-learn's calibration_curve")
    ece = float((n_in[nonzero] / len(confidence) * np.abs(share_true - mean_pred)).sum())
    bins = [{"low": float(edges[i]), "high": float(edges[i + 1]), "n": int(n_in[i]),
             "share_correct": float(t), "mean_confidence": float(p)}
            for i, t, p in zip(np.flatnonzero(nonzero), share_true, mean_pred)]
    return {"bins": bins, "ece": ece, "n": len(confidence)}


def model_family(name: str | None) -> str | None:
    """The model family a checkpoint or system name belongs to (MODEL_FAMILIES), or None."""
    if not name:
        return None
    lowered = str(name).lower()
    for family in MODEL_FAMILIES:
        if re.search(rf"(^|[^a-z]){re.escape(family)}(?![a-z])", lowered):  # "phi-3", not "philosophy"
            return family
    return None


def self_preference(*, judge_model: str, systems: dict[str, list[str]]) -> dict:
    """Flag a judge whose model family matches a compared system's (self-enhancement bias risk).

    systems: role (baseline / challenger) -> names that describe it (system name, backbone).
    Returns {"judge_family", "matches": [roles], "flag": bool}.
    """
    family = model_family(judge_model)
    matches = [role for role, names in systems.items()
               if family is not None and any(model_family(n) == family for n in names)]
    return {"judge_family": family, "matches": matches, "flag": bool(matches)}
