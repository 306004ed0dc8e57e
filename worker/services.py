"""Launching jobs: create the Job row and enqueue its task once the row is committed."""
from typing import Any

from celery import current_app as app  # the project's app (grag_site/celery.py); worker does not import grag_site
from django.db import transaction
from django.utils import timezone

from .jobs import log_tail_append
from .models import Job
from .registry import task_for_kind
from .shards import is_shard, shards_cancel, shards_settle


class BrokerUnavailable(RuntimeError):
    """The Celery broker did not answer; nothing was created or queued."""


def broker_check(*, timeout: float = 3.0) -> None:
    """Raise BrokerUnavailable with a clear message unless the broker answers within ``timeout``."""
    conn = app.connection_for_write()
    try:
        with conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except Exception as exc:  # kombu raises several types depending on the transport
        raise BrokerUnavailable(
            f"The task queue at {conn.as_uri()} did not answer "
            f"({type(exc).__name__}: {exc}). Start it (Redis: redis-server) and launch again; no job was created."
        ) from exc


def job_launch(
    *, kind: str, task: str | Any, params: dict[str, Any] | None = None, user=None, parent: Job | None = None
) -> Job:
    """Create a Job and enqueue ``task(job.id)`` after commit, so a worker never sees a missing row.

    ``task`` is a Celery task or its registered name (e.g. "worker.train"); the queue comes from
    CELERY_TASK_ROUTES. The broker is checked first: when it is down the caller gets
    BrokerUnavailable and no Job exists.
    """
    broker_check()
    job = Job.objects.create(kind=kind, params=params or {}, created_by=user, parent=parent)
    job_enqueue(job=job, task=task)
    return job


def job_enqueue(*, job: Job, task: str | Any) -> None:
    """Publish ``task(job.id)`` once the surrounding transaction commits."""
    name = task if isinstance(task, str) else task.name

    def publish() -> None:
        try:
            result = app.signature(name, args=[job.pk]).apply_async()
        except Exception as exc:
            Job.objects.filter(pk=job.pk).update(
                status=Job.Status.FAILED, error=f"could not enqueue: {exc}", finished_at=timezone.now()
            )
            raise
        Job.objects.filter(pk=job.pk).update(celery_id=result.id or "")

    transaction.on_commit(publish)


def _log(job: Job, message: str) -> None:
    """Append a line to the job's log tail (the row's current tail, not ``job``'s copy)."""
    with transaction.atomic():
        tail = Job.objects.select_for_update().values_list("log_tail", flat=True).get(pk=job.pk)
        Job.objects.filter(pk=job.pk).update(log_tail=log_tail_append(tail, message))


def job_cancel(*, job: Job, by: str = "") -> Job:
    """Ask a job to stop: revoke it if still queued, and set the flag its loops check if running.
    The job's log says who asked, and says when a queued job stops there and then (a running one's
    own loop logs its stop, worker/jobs.py)."""
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    _log(job, f"cancel requested{f' by {by}' if by else ''}")
    if job.celery_id:
        app.control.revoke(job.celery_id)
    if job.status == Job.Status.QUEUED:
        if Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(
            status=Job.Status.CANCELLED, finished_at=timezone.now()
        ):
            _log(job, "stopped: cancelled before it started (Retry runs it)")
    if (job.params or {}).get("sharded"):  # a job spread over workers: stop every shard
        shards_cancel(job)
    job.refresh_from_db()
    return job


def job_retry(*, job: Job) -> Job:
    """Run a failed or cancelled job again; tasks are idempotent and resume from checkpoints/caches."""
    if job.status not in (Job.Status.FAILED, Job.Status.CANCELLED):
        raise ValueError(f"Only failed or cancelled jobs can be retried; job {job.pk} is {job.status}.")
    broker_check()

    Job.objects.filter(pk=job.pk).update(
        status=Job.Status.QUEUED, cancel_requested=False, error="", traceback="", finished_at=None
    )
    if is_shard(job):
        # A shard of a cancelled job: the parent's stop flag would stop it again before it started
        # (its loops check the parent's flag too). Asking for the shard asks for the parent to run.
        Job.objects.filter(pk=job.parent_id).update(cancel_requested=False)
    job.refresh_from_db()
    job_enqueue(job=job, task=task_for_kind(job.kind))
    if is_shard(job):  # its parent runs again while it does
        shards_settle(job.parent_id)
    return job
