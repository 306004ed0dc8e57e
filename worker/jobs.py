"""Job bookkeeping shared by every task: state, progress, log tail, errors.

Tasks take a job id, re-fetch the Job, and run their service inside ``job_context``; the
context marks the job running (with host and device), gives the service a progress callback
that writes done/total/rate/ETA at most once a second and raises ``Cancelled`` when an admin
asked to stop, and records success, cancellation or the error with its traceback.
"""
import contextlib
import logging
import socket
import time
import traceback as tb
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from modeling.progress import Cancelled

from .models import Job

logger = logging.getLogger(__name__)
LOG_TAIL_CHARS = 4000


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()}"
    except Exception:  # torch missing or broken: the job still runs on CPU
        pass
    return "cpu"


@dataclass
class JobHandle:
    job: Job
    _started: float = field(default_factory=time.monotonic)
    _last_write: float = 0.0
    _first_done: int | None = None

    def log(self, message: str) -> None:
        """Append a line to the job's log tail (kept short) and to the worker log."""
        logger.info("job %s: %s", self.job.pk, message)
        tail = (self.job.log_tail + message.rstrip() + "\n")[-LOG_TAIL_CHARS:]
        self.job.log_tail = tail
        Job.objects.filter(pk=self.job.pk).update(log_tail=tail)

    def progress(self, done: int, total: int) -> None:
        """Record progress; raise Cancelled if the job was asked to stop."""
        now = time.monotonic()
        if self._first_done is None:
            self._first_done, self._started = done, now
        if now - self._last_write < 1.0 and done < total:
            return
        self._last_write = now
        elapsed = now - self._started
        rate = (done - self._first_done) / elapsed if elapsed > 0 and done > self._first_done else None
        eta = (total - done) / rate if rate else None
        Job.objects.filter(pk=self.job.pk).update(progress_done=done, progress_total=total, rate=rate, eta_seconds=eta)
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            raise Cancelled(f"job {self.job.pk} was cancelled")


@contextlib.contextmanager
def job_context(job_id: int) -> Iterator[JobHandle]:
    """Run a job's body, keeping the Job row's status, timing and error up to date."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status == Job.Status.CANCELLED or job.cancel_requested:
            job.status = Job.Status.CANCELLED
            job.finished_at = job.finished_at or timezone.now()
            job.save(update_fields=["status", "finished_at"])
            raise Cancelled(f"job {job_id} was cancelled before it started")
        job.status = Job.Status.RUNNING
        job.started_at = timezone.now()
        job.finished_at = None
        job.error = job.traceback = ""
        job.attempts += 1
        job.worker_host = socket.gethostname()
        job.device = _device()
        job.save()
    handle = JobHandle(job=job)
    try:
        yield handle
    except Cancelled:
        Job.objects.filter(pk=job_id).update(status=Job.Status.CANCELLED, finished_at=timezone.now())
        handle.log("cancelled")
    except Exception as exc:
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=tb.format_exc(),
            finished_at=timezone.now(),
        )
        raise
    else:
        job.refresh_from_db(fields=["progress_total"])
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.SUCCEEDED, result=handle.job.result, finished_at=timezone.now(),
            progress_done=max(job.progress_total, 1), progress_total=max(job.progress_total, 1),
        )
        if job.parent_id:  # a pipeline stage: the pipeline's progress counts finished stages
            done = Job.objects.filter(parent_id=job.parent_id, status=Job.Status.SUCCEEDED).count()
            Job.objects.filter(pk=job.parent_id).update(progress_done=done)
