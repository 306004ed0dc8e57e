"""Automatic metrics of the GRAG paper (section 4.3.3, Table 3), in plain Python: no Django.

Char-F1, ROUGE-1/2/L, BLEU, BPC and BERTScore P/R/F1 of predicted responses against the
references R_P. Each function takes parallel lists (hypotheses[i] answers references[i]) and
returns per-sample values plus the run's figure, so the caller can store both. Higher is better
for every metric except BPC (the paper's "BPC [down arrow]").

Every text metric first passes both sides through ``modeling.text.canonical_text`` (NFC,
whitespace collapsed; recorded as meta["canonical"]) and applies one rule for empty texts
(``empty_pair_score``). docs/metrics.md describes both, the tokenizers and the warnings.

The package, by seam (callers import from ``modeling.metrics``, which re-exports every public name):

- ``base``: ``MetricScores``, ``METRICS``, the input check, the empty-text rule, the dropped-text warning;
- ``overlap``: Char-F1, ROUGE, BLEU and ``text_metrics`` (all of them at once; no model);
- ``bpc``: bits per character from a model's negative log-likelihood;
- ``bertscore``: BERTScore with one scorer per process.
"""
from .base import (
    DROPPED_WARN_SHARE,
    LOWER_IS_BETTER,
    METRICS,
    MetricInputError,
    MetricScores,
    dropped_share,
    empty_pair_score,
)
from .bertscore import (
    BERTSCORE_DEFAULT_MODEL,
    BERTSCORE_MINILM,
    MINILM_LAYERS,
    BertScore,
    BertScoreConfig,
    bert_score,
    bert_scorer_get,
    bert_scorer_release,
    minilm_path,
)
from .bpc import bpc, bpc_run
from .overlap import UnicodeRougeTokenizer, bleu, bleu_tokenizer, char_f1, char_f1_sample, rouge, text_metrics

__all__ = [
    "BERTSCORE_DEFAULT_MODEL", "BERTSCORE_MINILM", "DROPPED_WARN_SHARE", "LOWER_IS_BETTER", "METRICS", "MINILM_LAYERS",
    "BertScore", "BertScoreConfig", "MetricInputError", "MetricScores", "UnicodeRougeTokenizer",
    "bert_score", "bert_scorer_get", "bert_scorer_release", "bleu", "bleu_tokenizer", "bpc", "bpc_run",
    "char_f1", "char_f1_sample", "dropped_share", "empty_pair_score", "minilm_path", "rouge", "text_metrics",
]
