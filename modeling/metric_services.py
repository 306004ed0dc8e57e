"""Score a system's responses and store the figures as MetricResult rows (per sample and per run).

The maths lives in modeling/metrics/ (no Django); this module loads the responses, calls it,
and writes every row of a run in one transaction, so a table never shows half a run.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction

from . import metrics as m
from .models import MetricResult, Response, System
from .progress import no_progress
from .text import is_empty

logger = logging.getLogger(__name__)

# Environment variable naming the default BERTScore model (e.g. "minilm" on a machine without
# roberta-large); the default follows BERTScore's paper.
BERTSCORE_MODEL_ENV = "BERTSCORE_MODEL"
BERTSCORE_LAYER_ENV = "BERTSCORE_LAYER"


class MetricsError(ValueError):
    """The system cannot be scored as asked; the message says why and what to do."""


@dataclass
class MetricsReport:
    """What metrics_compute did, as the command prints it and the job stores it."""

    system: str
    split: str
    samples: int
    corpus: dict[str, float]
    rows_written: int
    skipped: dict[str, str] = field(default_factory=dict)
    meta: dict[str, dict] = field(default_factory=dict)
    # What a reader of the figures must know (text mostly dropped by a tokenizer, BERTScore inputs
    # cut at the model's maximum length): one line each, from the metrics' meta["warning"].
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"system": self.system, "split": self.split, "samples": self.samples, "corpus": self.corpus,
                "rows_written": self.rows_written, "skipped": self.skipped, "meta": self.meta,
                "warnings": self.warnings}


def _bert_config(bert_model: str | None, bert_layer: int | None) -> tuple[m.BertScoreConfig, bool]:
    """The BERTScore config and whether the caller (argument or environment) chose the model explicitly."""
    env_model = os.environ.get(BERTSCORE_MODEL_ENV) or None
    env_layer = os.environ.get(BERTSCORE_LAYER_ENV) or None
    model = bert_model or env_model or m.BERTSCORE_DEFAULT_MODEL
    layer = bert_layer if bert_layer is not None else (int(env_layer) if env_layer else None)
    return m.BertScoreConfig(model=model, num_layers=layer), bool(bert_model or env_model)


def metrics_compute(
    *,
    system: System,
    split: str = "test",
    bert_model: str | None = None,
    bert_layer: int | None = None,
    bert: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> MetricsReport:
    """Compute Table 3's metrics for ``system``'s responses on ``split`` and store them.

    Per sample: char_f1, rouge1/2/L, sentence BLEU, BPC (when the response's meta carries
    ``nll_nats``) and BERTScore P/R/F1. Per run (sample = NULL): their means, except BLEU (sacrebleu
    corpus BLEU, signature in meta) and BPC (total bits over total reference characters).
    Rerunning replaces the rows: the result is the same whatever ran before. Every metric sees
    the texts after modeling.text.canonical_text; the report's ``warnings`` repeat what the
    metrics flagged (texts their tokenizer mostly dropped, BERTScore pairs cut at the model's
    maximum length).

    BERTScore uses ``bert_model`` (a name, a local folder, or "minilm"), else $BERTSCORE_MODEL,
    else roberta-large. When that default is not on this machine BERTScore is skipped and the
    report says so; a model named explicitly that cannot be loaded is an error.
    """
    progress = progress or no_progress
    responses = list(
        Response.objects.filter(system=system, sample__split=split)
        .select_related("sample").order_by("sample_id")
    )
    if not responses:
        raise MetricsError(
            f"System {system.name!r} has no responses on split {split!r}: generate them first "
            f"(a generate job), or pick the split its responses are on."
        )
    hypotheses = [r.text for r in responses]
    references = [r.sample.reference for r in responses]
    total_steps = len(responses) * 2  # text metrics, then BERTScore
    progress(0, total_steps)

    results: dict[str, m.MetricScores] = m.text_metrics(hypotheses, references)
    skipped: dict[str, str] = {}

    # BPC: the model's NLL of the reference, written by the generation step (Response.meta).
    with_nll = [r for r in responses if r.meta.get("nll_nats") is not None]
    # BPC is undefined for an empty reference (no characters): such samples get no BPC row.
    empty_reference = [r for r in with_nll if is_empty(r.sample.reference)]
    with_nll = [r for r in with_nll if not is_empty(r.sample.reference)]
    if with_nll:
        nll, chars = [], []
        for r in with_nll:
            try:
                nll.append(float(r.meta["nll_nats"]))
                chars.append(int(r.meta.get("ref_chars") or len(r.sample.reference)))
                m.bpc(nll[-1], chars[-1])
            except (TypeError, ValueError) as exc:  # MetricInputError is a ValueError
                raise MetricsError(
                    f"Response {r.pk} of {system.name!r} (sample {r.sample.key}) has unusable BPC inputs "
                    f"nll_nats={r.meta.get('nll_nats')!r}, ref_chars={r.meta.get('ref_chars')!r}: {exc}"
                ) from exc
        bpc_scores = m.bpc_run(nll, chars)
        bpc_samples = [r.sample_id for r in with_nll]
        bpc_scores.meta["samples_with_nll"] = len(with_nll)
        bpc_scores.meta["empty_references"] = len(empty_reference)
        results["bpc"] = bpc_scores
    else:
        bpc_samples = []
        skipped["bpc"] = ("every reference with an NLL is empty (BPC needs characters)" if empty_reference else
                          "no response carries meta['nll_nats'] (the model's NLL of the reference)")
    progress(len(responses), total_steps)

    if bert:
        config, explicit = _bert_config(bert_model, bert_layer)
        try:
            scorer = m.bert_scorer_get(config)
        except m.MetricInputError as exc:
            if explicit:
                raise MetricsError(str(exc)) from exc
            skipped["bert"] = f"{exc} (set {BERTSCORE_MODEL_ENV} or pass a BERTScore model to score it)"
            logger.warning("BERTScore skipped for %s: %s", system.name, exc)
        else:
            try:
                results.update(m.bert_score(
                    hypotheses, references, scorer=scorer,
                    progress=lambda done, total: progress(len(responses) + done, total_steps),
                ))
            finally:
                # A GPU worker also trains: keep the scorer between runs only where memory is plentiful (CPU).
                if str(scorer.scorer.device).startswith("cuda"):
                    m.bert_scorer_release()
    else:
        skipped["bert"] = "not requested"

    sample_ids = [r.sample_id for r in responses]
    rows = _metric_rows(system=system, split=split, results=results, sample_ids=sample_ids, bpc_samples=bpc_samples)
    with transaction.atomic():
        # Replace this run's rows wholesale: a metric skipped now must not leave a stale figure behind.
        MetricResult.objects.filter(system=system, split=split).delete()
        MetricResult.objects.bulk_create(rows, batch_size=2000)
    progress(total_steps, total_steps)
    return MetricsReport(
        system=system.name, split=split, samples=len(responses),
        corpus={name: results[name].value for name in m.METRICS if name in results},
        rows_written=len(rows), skipped=skipped,
        meta={name: results[name].meta for name in ("char_f1", "rouge1", "bleu", "bert_f1", "bpc") if name in results},
        warnings=_warnings(results),
    )


def _warnings(results: dict[str, m.MetricScores]) -> list[str]:
    """Each distinct meta["warning"] of the run's metrics, once (ROUGE-1/2/L and BERT P/R/F1 share theirs)."""
    return list(dict.fromkeys(s.meta["warning"] for s in results.values() if s.meta.get("warning")))


def _metric_rows(
    *, system: System, split: str, results: dict[str, m.MetricScores], sample_ids: list[int], bpc_samples: list[int]
) -> list[MetricResult]:
    rows = []
    for name, scores in results.items():
        ids = bpc_samples if name == "bpc" else sample_ids
        meta = dict(scores.meta)
        rows.append(MetricResult(system=system, sample=None, split=split, name=name, value=scores.value, meta=meta))
        # Per-sample rows keep only what tells a reader how the number was made (the signature for BLEU).
        sample_meta = {"signature": meta["sentence_signature"]} if name == "bleu" else {}
        rows += [
            MetricResult(system=system, sample_id=sid, split=split, name=name, value=value, meta=sample_meta)
            for sid, value in zip(ids, scores.per_sample)
        ]
    return rows
