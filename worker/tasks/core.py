"""Celery tasks: thin wrappers that take a job id, re-fetch, call one service, save results."""

__all__ = ["ping"]
from celery import shared_task

from ..jobs import job_context


@shared_task(name="worker.ping")
def ping(job_id: int) -> dict:
    """Prove the round trip launcher -> broker -> worker -> database works."""
    from django.db import connection

    with job_context(job_id) as handle:
        handle.job.result = {"pong": True, "database": connection.vendor, "host": handle.job.worker_host}
        handle.log("pong")
    return {"job": job_id}
