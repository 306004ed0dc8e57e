"""What every metric of the package shares: the result type, input checks, the empty-text rule, the dropped-text warning.

docs/metrics.md describes the rules; the metrics themselves are in overlap.py, bpc.py and bertscore.py.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..text import canonical_text

# Metric names as stored in MetricResult.name, in Table 3's column order.
METRICS = ("char_f1", "rouge1", "rouge2", "rougeL", "bleu", "bpc", "bert_p", "bert_r", "bert_f1")
LOWER_IS_BETTER = frozenset({"bpc"})


class MetricInputError(ValueError):
    """The inputs to a metric do not fit together (e.g. lists of different lengths)."""


def _check_parallel(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise MetricInputError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: each hypothesis needs one reference."
        )


@dataclass(frozen=True)
class MetricScores:
    """One metric over a run: the run's figure and the per-sample values it came from."""

    value: float
    per_sample: list[float]
    meta: dict = field(default_factory=dict)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _canonical_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    """Both sides through the one canonicalisation step (modeling.text.canonical_text)."""
    _check_parallel(hypotheses, references)
    return [canonical_text(h) for h in hypotheses], [canonical_text(r) for r in references]


def empty_pair_score(hypothesis: str, reference: str, *, best: float = 1.0) -> float | None:
    """The score of a pair with an empty side, the same for every metric; None when neither side is empty.

    Texts are canonical (canonical_text): empty means no character at all, so whitespace-only is
    empty and "..." is not. Both empty: the hypothesis says exactly what the reference says
    (nothing), so it gets the metric's best value ``best`` (1.0; 100 for BLEU). Exactly one
    empty: nothing matches, 0. BPC has no such rule: it is undefined for an empty reference.
    """
    if hypothesis and reference:
        return None
    return best if not hypothesis and not reference else 0.0


# Share of a text's non-space characters a tokenizer may drop before the run warns about it.
DROPPED_WARN_SHARE = 0.5


def dropped_share(text: str, tokens: Sequence[str]) -> float:
    """Share (0-1) of ``text``'s non-space characters that are in none of ``tokens`` (by count)."""
    n_text = sum(1 for ch in text if not ch.isspace())
    if not n_text:
        return 0.0
    kept = sum(len(t) for t in tokens)
    return max(0.0, 1.0 - kept / n_text)


def _dropped_warning(metric: str, tokenizer: str, texts: Sequence[str], tokenize) -> dict:
    """meta entries on texts whose tokenization dropped most of their characters (a warning when any)."""
    dropped = [i for i, text in enumerate(texts) if dropped_share(text, tokenize(text)) > DROPPED_WARN_SHARE]
    meta = {"texts_mostly_dropped": len(dropped)}
    if dropped:
        meta["warning"] = (
            f"{metric}: the {tokenizer} tokenizer dropped more than {DROPPED_WARN_SHARE:.0%} of the characters "
            f"of {len(dropped)} of {len(texts)} texts (e.g. {texts[dropped[0]][:60]!r}); they score as if "
            f"they were (nearly) empty."
        )
    return meta
