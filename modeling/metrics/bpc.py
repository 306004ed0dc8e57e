"""Bits per character (section 4.3.3, Table 3's BPC): the model's likelihood of the reference, comparable across tokenizers."""
from __future__ import annotations

import math
from collections.abc import Sequence

from .base import MetricInputError, MetricScores


def bpc(nll_nats_sum: float, n_chars: int) -> float:
    """Bits per character: the model's negative log-likelihood of the reference, in bits, per character.

    ``nll_nats_sum`` is the summed token NLL (natural log) of the reference R_P given the model's
    input; ``n_chars`` the reference's character count. BPC = nll / ln 2 / chars (section 4.3.3:
    unlike perplexity it compares models with different tokenizers). For a run, pass the sums
    over all samples (the figure is then per character of the whole test set, not a mean of ratios).
    """
    if n_chars <= 0:
        raise MetricInputError(f"BPC needs a positive character count, got {n_chars}.")
    if nll_nats_sum < 0 or math.isnan(nll_nats_sum):
        raise MetricInputError(f"BPC needs a non-negative negative log-likelihood, got {nll_nats_sum}.")
    return nll_nats_sum / math.log(2) / n_chars


def bpc_run(nll_nats: Sequence[float], ref_chars: Sequence[int]) -> MetricScores:
    """BPC per sample and for the run (total bits over total characters)."""
    if len(nll_nats) != len(ref_chars):
        raise MetricInputError(f"{len(nll_nats)} NLL values but {len(ref_chars)} character counts.")
    per_sample = [bpc(n, c) for n, c in zip(nll_nats, ref_chars)]
    value = bpc(sum(nll_nats), sum(ref_chars)) if per_sample else 0.0
    return MetricScores(value=value, per_sample=per_sample, meta={"aggregate": "sum(nll)/ln2/sum(chars)"})
