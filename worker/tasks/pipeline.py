"""Celery tasks that bracket a pipeline chain (see worker/pipeline.py)."""
from celery import shared_task
from django.utils import timezone

from ..models import Job

__all__ = ["pipeline_start", "pipeline_finish", "pipeline_failed"]


@shared_task(name="worker.pipeline_start")
def pipeline_start(job_id: int) -> None:
    Job.objects.filter(pk=job_id).update(status=Job.Status.RUNNING, started_at=timezone.now(), attempts=1)


@shared_task(name="worker.pipeline_finish")
def pipeline_finish(job_id: int) -> None:
    parent = Job.objects.get(pk=job_id)
    results = {f"{c.pk}:{c.kind}": c.result for c in parent.children.order_by("pk")}
    Job.objects.filter(pk=job_id).update(
        status=Job.Status.SUCCEEDED, finished_at=timezone.now(), result=results,
        progress_done=parent.children.count(),
    )


@shared_task(name="worker.pipeline_failed")
def pipeline_failed(*args) -> None:
    """Error callback: Celery passes (request, exc, traceback) before our job id when not immutable."""
    job_id = args[-1] if args and isinstance(args[-1], int) else args[0]
    parent = Job.objects.get(pk=job_id)
    failed = parent.children.filter(status=Job.Status.FAILED).first()
    Job.objects.filter(pk=job_id).update(
        status=Job.Status.FAILED, finished_at=timezone.now(),
        error=f"stage {failed} failed: {failed.error}" if failed else "a stage failed",
    )
    parent.children.filter(status=Job.Status.QUEUED).update(status=Job.Status.CANCELLED, finished_at=timezone.now())
