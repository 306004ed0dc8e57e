"""Celery tasks for the metrics stage (thin wrappers: take a job id, call one service)."""
from celery import shared_task

from ..jobs import job_context

__all__ = ["metrics"]


@shared_task(name="worker.metrics")
def metrics(job_id: int) -> dict:
    """Score a system's responses (params: system, split, optional bert_model / bert_layer)."""
    # lazy: at call time: a worker loads a stage's services when it runs that stage's job
    from modeling.metric_services import metrics_compute
    from modeling.models import System

    with job_context(job_id) as handle:
        p = handle.job.params
        system = System.objects.get(name=p["system"])
        report = metrics_compute(
            system=system, split=p.get("split", "test"), bert_model=p.get("bert_model") or None,
            bert_layer=p.get("bert_layer"), progress=handle.progress,
        )
        handle.job.result = report.as_dict()
        handle.log(f"{report.rows_written} metric rows for {system.name}/{report.split}: "
                   + ", ".join(f"{k}={v:.4g}" for k, v in report.corpus.items()))
        for name, why in report.skipped.items():
            handle.log(f"skipped {name}: {why}")
        for warning in report.warnings:
            handle.log(f"warning: {warning}")
    return {"job": job_id}
