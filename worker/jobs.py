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
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from modeling.progress import Cancelled

from .models import Job
from .shards import is_shard, shards_progress, shards_settle

logger = logging.getLogger(__name__)
LOG_TAIL_CHARS = 4000


def _worker_name() -> str:
    """The Celery node name of the worker running this task (``-n w1@%h``), so two workers on one
    host tell apart on the job page; the host name outside a worker."""
    try:
        from celery import current_task

        name = current_task.request.hostname if current_task else None
    except Exception:  # no task context
        name = None
    return name or socket.gethostname()


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.current_device()} {torch.cuda.get_device_name()}"
    except Exception:  # torch missing or broken: the job still runs on CPU
        pass
    return "cpu"


RATE_WINDOW_SECONDS = 60.0


def recent_rate(points: deque, now: float, done: int,
                window: float = RATE_WINDOW_SECONDS) -> float | None:
    """Units per second over the last ``window`` seconds of progress updates.

    ``points`` holds (monotonic time, units done) of earlier updates, oldest first; it is trimmed in
    place to the window plus the one update just before it, so a unit slower than the window still
    gets a rate. The mean since the start is wrong both ways: a slow start (model loading, the
    first batch's warm-up) makes the ETA too long for the rest, and a fast one (cached prompts,
    resumed samples) makes it far too short: 438 s said for a stage that took 10 minutes.
    """
    while len(points) >= 2 and points[1][0] <= now - window:
        points.popleft()
    if not points:
        return None
    t0, done0 = points[0]
    if now <= t0 or done <= done0:
        return None
    return (done - done0) / (now - t0)


def log_tail_append(tail: str, message: str) -> str:
    """``tail`` with ``message`` as its last line, cut to the last LOG_TAIL_CHARS characters."""
    return (tail + message.rstrip() + "\n")[-LOG_TAIL_CHARS:]


@dataclass
class JobHandle:
    job: Job
    clock: Callable[[], float] = time.monotonic  # a test drives the rate with its own clock
    _last_write: float = float("-inf")
    _points: deque = field(default_factory=deque)
    # Set by a job that handed its work to shards (worker/shards.py): they finish it, not its own task.
    detached: bool = False

    def log(self, message: str) -> None:
        """Append a line to the job's log tail (kept short) and to the worker log."""
        logger.info("job %s: %s", self.job.pk, message)
        # The row's tail, not this handle's copy: a cancel request logs there too (worker/services.py).
        current = Job.objects.filter(pk=self.job.pk).values_list("log_tail", flat=True).first()
        tail = log_tail_append(self.job.log_tail if current is None else current, message)
        self.job.log_tail = tail
        Job.objects.filter(pk=self.job.pk).update(log_tail=tail)

    def progress(self, done: int, total: int) -> None:
        """Record progress (``done`` of ``total`` units); raise Cancelled if the job was asked to stop.

        Writes done/total, the recent rate (units per second, see ``recent_rate``) and the ETA in
        seconds at most once a second.
        """
        now = self.clock()
        if self._points and done < self._points[-1][1]:
            self._points.clear()  # a new phase counting from zero: its rate starts afresh
        rate = recent_rate(self._points, now, done)
        if not self._points or now - self._points[-1][0] >= 0.25:  # bounded memory for fast loops
            self._points.append((now, done))
        if now - self._last_write < 1.0 and done < total:
            return
        self._last_write = now
        eta = (total - done) / rate if rate else None
        Job.objects.filter(pk=self.job.pk).update(progress_done=done, progress_total=total, rate=rate, eta_seconds=eta)
        watched = [self.job.pk]
        if is_shard(self.job):  # a shard also stops when its parent is cancelled
            shards_progress(self.job.parent_id)
            watched.append(self.job.parent_id)
        if Job.objects.filter(pk__in=watched, cancel_requested=True).exists():
            raise Cancelled(f"job {self.job.pk} was cancelled")


@contextlib.contextmanager
def job_context(job_id: int) -> Iterator[JobHandle]:
    """Run a job's body, keeping the Job row's status, timing and error up to date."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        parent_cancelled = is_shard(job) and Job.objects.filter(pk=job.parent_id, cancel_requested=True).exists()
        stopped = job.status == Job.Status.CANCELLED or job.cancel_requested or parent_cancelled
        if stopped:  # saved here, raised below: an exception inside the block would roll the save back
            job.status = Job.Status.CANCELLED
            job.finished_at = job.finished_at or timezone.now()
            job.save(update_fields=["status", "finished_at"])
        else:
            job.status = Job.Status.RUNNING
            job.started_at = timezone.now()
            job.finished_at = None
            job.error = job.traceback = ""
            job.attempts += 1
            job.worker_host = _worker_name()
            job.device = _device()
            job.save()
    if stopped:
        _settle_parent(job)
        raise Cancelled(f"job {job_id} was cancelled before it started")
    handle = JobHandle(job=job)
    if is_shard(job):
        shards_settle(job.parent_id)  # the parent runs again while any shard does
    try:
        yield handle
    except Cancelled:
        Job.objects.filter(pk=job_id).update(status=Job.Status.CANCELLED, finished_at=timezone.now())
        handle.log("stopped: cancelled (Retry resumes it)")
        _settle_parent(job)
    except Exception as exc:
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.FAILED, error=f"{type(exc).__name__}: {exc}", traceback=tb.format_exc(),
            finished_at=timezone.now(),
        )
        _settle_parent(job)
        raise
    else:
        if handle.detached:  # its shards run the work and finish it (worker/shards.py)
            if handle.job.result:  # unless the shards already finished it (their result wins)
                Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(result=handle.job.result)
            return
        job.refresh_from_db(fields=["progress_total"])
        Job.objects.filter(pk=job_id).update(
            status=Job.Status.SUCCEEDED, result=handle.job.result, finished_at=timezone.now(),
            progress_done=max(job.progress_total, 1), progress_total=max(job.progress_total, 1),
        )
        if is_shard(job):
            shards_settle(job.parent_id)
        elif job.parent_id:  # a pipeline stage: the pipeline's progress counts finished stages
            done = Job.objects.filter(parent_id=job.parent_id, status=Job.Status.SUCCEEDED).count()
            Job.objects.filter(pk=job.parent_id).update(progress_done=done)


def _settle_parent(job: Job) -> None:
    """A shard that stopped: its parent's status follows (never masking the shard's own error)."""
    if is_shard(job):
        try:
            shards_settle(job.parent_id)
        except Exception:
            logger.exception("settling the parent of shard job %s failed", job.pk)
