"""Launching jobs: create the Job row and enqueue its task once the row is committed."""
from typing import Any

from django.db import transaction
from django.utils import timezone

from grag_site.celery import app

from .models import Job


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


def job_launch(*, kind: str, task, params: dict[str, Any] | None = None, user=None, queue: str | None = None) -> Job:
    """Create a Job and enqueue ``task(job.id)`` after commit, so a worker never sees a missing row.

    The broker is checked first: when it is down the caller gets BrokerUnavailable and no Job exists.
    """
    broker_check()
    job = Job.objects.create(kind=kind, params=params or {}, created_by=user)

    def publish() -> None:
        try:
            result = task.apply_async(args=[job.pk], **({"queue": queue} if queue else {}))
        except Exception as exc:
            Job.objects.filter(pk=job.pk).update(
                status=Job.Status.FAILED, error=f"could not enqueue: {exc}", finished_at=timezone.now()
            )
            raise
        Job.objects.filter(pk=job.pk).update(celery_id=result.id or "")

    transaction.on_commit(publish)
    return job
