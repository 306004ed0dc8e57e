"""One job spread over every free worker of its queue: shards (issue 19).

A judge run, an augmentation job or an ICL job whose work is large splits into ``shards``
child Jobs (``Job.parent``), each a disjoint, contiguous range of the work (the run's items,
the split's samples), published as one Celery group so that every free worker of the queue
takes one. Each shard is an ordinary job of the same kind and task with ``params["range"]``:
it writes through the same idempotent paths as an unsharded job (verdicts and ratings through
``ratings_append``, generic responses and ICL outputs keyed by sample), so a shard that is
retried or redelivered after its worker died resumes and never duplicates.

The parent job follows its shards (``shards_settle``): running while any is queued or
running; failed, naming the shard, when one failed and none still runs; cancelled when one was
cancelled; succeeded when all did, and only then is the whole job finished once (the judge
run's summary and reliability verdict over every item, ICL systems' run statistics). Its
progress is the sum of the shards' done/total, its rate the sum of the running shards' rates,
its ETA the longest shard's and its worker the shards' workers (``shards_progress``). Cancelling the parent stops them all: a shard's progress checks its parent's flag too.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from .models import Job
from .registry import task_for_kind

logger = logging.getLogger(__name__)
ACTIVE = (Job.Status.QUEUED, Job.Status.RUNNING)


def shard_ranges(units: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous, disjoint (start, stop) ranges covering ``range(units)``, sizes differing
    by at most one; fewer when there are fewer units than shards. Raises ValueError for shards < 1."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    shards = max(1, min(shards, units))
    size, extra = divmod(units, shards)
    ranges, start = [], 0
    for i in range(shards):
        stop = start + size + (1 if i < extra else 0)
        ranges.append((start, stop))
        start = stop
    return ranges


def shards_count(units: int, requested: int | None = None) -> int:
    """How many shards a job of ``units`` (items, samples) gets.

    ``requested`` (the launch field "shards") wins, capped at ``units``; without it, one shard per
    ``JOB_SHARD_MIN_UNITS`` units up to ``JOB_SHARDS`` (the number of workers a lab runs on the
    queue; default 1, which keeps one job on one worker).
    """
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"shards must be at least 1, got {requested}")
        return max(1, min(int(requested), units))
    most = max(1, int(getattr(settings, "JOB_SHARDS", 1)))
    per_shard = max(1, int(getattr(settings, "JOB_SHARD_MIN_UNITS", 8)))
    return max(1, min(most, units // per_shard))


def shard_range(job: Job) -> tuple[int, int] | None:
    """The (start, stop) range of work of a shard job; None for a whole (unsharded or parent) job."""
    rng = (job.params or {}).get("range")
    return (int(rng[0]), int(rng[1])) if rng else None


def is_shard(job: Job) -> bool:
    return job.parent_id is not None and shard_range(job) is not None


def shards_dispatch(*, parent: Job, ranges: list[tuple[int, int]], params: dict, units_per_range_unit: int = 1) -> list[Job]:
    """Create the parent's shard jobs (or reuse them when the parent runs again) and enqueue, as one
    Celery group, every shard not yet succeeded and not queued or running.

    ``params``: what every shard gets (e.g. the judge run's id); each also gets ``range``,
    ``shard`` (1-based) and ``shards``. ``units_per_range_unit``: progress units per range unit
    (a judge item is questions x 2 prompts), so the parent's total is known before any shard runs.
    """
    from celery import current_app as app
    from celery import group

    with transaction.atomic():
        Job.objects.select_for_update().filter(pk=parent.pk).first()
        shards = list(parent.children.order_by("pk"))
        if not shards:
            shards = [
                Job.objects.create(
                    kind=parent.kind, parent=parent, created_by=parent.created_by,
                    params={**params, "range": [a, b], "shard": i, "shards": len(ranges)},
                    progress_total=(b - a) * units_per_range_unit,
                )
                for i, (a, b) in enumerate(ranges, start=1)
            ]
        again = [s for s in shards if s.status in (Job.Status.FAILED, Job.Status.CANCELLED)]
        Job.objects.filter(pk__in=[s.pk for s in again]).update(
            status=Job.Status.QUEUED, cancel_requested=False, error="", traceback="", finished_at=None)
        todo = [s for s in shards if s.status == Job.Status.QUEUED and not s.celery_id] + again
        Job.objects.filter(pk=parent.pk).update(params={**parent.params, "sharded": len(shards)})

        def publish() -> None:
            if not todo:
                return
            signatures = [app.signature(task_for_kind(s.kind), args=[s.pk], immutable=True) for s in todo]
            result = group(signatures).apply_async()
            for shard, res in zip(todo, result.results):
                Job.objects.filter(pk=shard.pk).update(celery_id=res.id or "")

        transaction.on_commit(publish)
    shards_settle(parent.pk)
    return shards


def job_shards(job: Job, units: int) -> int:
    """The shard count of a whole job of ``units``: the one it already has when it runs again, 1 for
    a pipeline stage (the pipeline's chain waits on the stage's own task), else ``shards_count``
    of its "shards" parameter. Raises ValueError for a "shards" below 1."""
    params = job.params or {}
    if params.get("sharded"):
        return int(params["sharded"])
    if job.parent_id is not None:
        return 1
    requested = params.get("shards")
    return shards_count(units, None if requested in (None, "") else int(requested))


# Dotted paths (imported when used, so the web process needs no task module): what finishes a
# whole job once all its shards succeeded, f(parent, shards) -> result dict; and what a job does
# when its shards stopped without all succeeding, f(parent, status).
FINISHERS = {
    Job.Kind.JUDGE: "worker.tasks.judge.judge_shards_finish",
    Job.Kind.AUGMENT: "worker.tasks.llm.augment_shards_finish",
    Job.Kind.ICL: "worker.tasks.llm.icl_shards_finish",
}
STOPPERS = {Job.Kind.JUDGE: "worker.tasks.judge.judge_shards_stopped"}


def shards_progress(parent_id: int) -> None:
    """Write the parent's progress from its shards: done and total summed; rate the sum of the
    running shards' rates (units per second: the whole job's throughput); ETA the longest of its
    shards' (seconds): a running shard's left work at its own rate, a queued shard's at the mean
    rate of the running ones (the parent ends with its slowest shard, not at the summed rate's
    average); worker: the shards' workers, in shard order ("w1@lab, w2@lab")."""
    shards = list(Job.objects.filter(parent_id=parent_id).order_by("pk"))
    done = sum(s.progress_done for s in shards)
    total = sum(s.progress_total for s in shards)
    rates = [s.rate for s in shards if s.status == Job.Status.RUNNING and s.rate]
    mean_rate = sum(rates) / len(rates) if rates else None
    etas = []
    for shard in shards:
        rate = shard.rate if shard.status == Job.Status.RUNNING else mean_rate
        left = max(shard.progress_total - shard.progress_done, 0)
        if shard.status in ACTIVE and left:
            etas.append(left / rate if rate else None)
    eta = None if not etas or None in etas else max(etas)
    workers = ", ".join(dict.fromkeys(s.worker_host for s in shards if s.worker_host))
    Job.objects.filter(pk=parent_id).update(
        progress_done=done, progress_total=total, rate=sum(rates) if rates else None, eta_seconds=eta,
        **({"worker_host": workers[:200]} if workers else {}),
    )


def shards_settle(parent_id: int) -> Job:
    """Bring a sharded parent's progress and status in line with its shards (see the module doc).

    Called by every shard when it starts and when it stops, and by cancel and retry. The parent
    row is locked, so the whole-job finish (``FINISHERS``) runs once, by the last shard to stop.
    """
    shards_progress(parent_id)
    with transaction.atomic():
        parent = Job.objects.select_for_update().get(pk=parent_id)
        shards = list(parent.children.order_by("pk"))
        if not shards or not parent.params.get("sharded"):
            return parent
        statuses = {s.status for s in shards}
        fields = ["status", "finished_at", "error"]
        if statuses & set(ACTIVE):
            parent.status, parent.finished_at, parent.error = Job.Status.RUNNING, None, ""
        elif statuses == {Job.Status.SUCCEEDED}:
            if parent.status == Job.Status.SUCCEEDED:
                return parent  # finished already, by the shard that stopped first
            finish = import_string(FINISHERS[parent.kind]) if parent.kind in FINISHERS else None
            try:
                with transaction.atomic():
                    parent.result = {**(finish(parent, shards) if finish else {}), "shards": len(shards)}
                parent.status, parent.error = Job.Status.SUCCEEDED, ""
            except Exception as exc:  # the finish itself failed: say so on the parent
                logger.exception("finishing job %s failed", parent.pk)
                parent.status, parent.error = Job.Status.FAILED, f"finishing failed: {type(exc).__name__}: {exc}"
            parent.finished_at = timezone.now()
            fields.append("result")
        else:
            failed = [s for s in shards if s.status == Job.Status.FAILED]
            if failed:
                parent.status = Job.Status.FAILED
                parent.error = "; ".join(
                    f"shard {s.params.get('shard')}/{len(shards)} (job #{s.pk}) failed: {s.error}" for s in failed)
            else:
                parent.status, parent.error = Job.Status.CANCELLED, ""
            parent.finished_at = parent.finished_at or timezone.now()
            if parent.kind in STOPPERS:
                import_string(STOPPERS[parent.kind])(parent, parent.status)
        parent.save(update_fields=fields)
    return parent


def shards_cancel(parent: Job) -> None:
    """Stop every shard of ``parent``: flag them (their loops check it), revoke and mark cancelled
    those still queued, then settle the parent."""
    from celery import current_app as app

    shards = list(parent.children.filter(status__in=ACTIVE))
    Job.objects.filter(pk__in=[s.pk for s in shards]).update(cancel_requested=True)
    for shard in shards:
        if shard.celery_id and shard.status == Job.Status.QUEUED:
            app.control.revoke(shard.celery_id)
    Job.objects.filter(pk__in=[s.pk for s in shards], status=Job.Status.QUEUED).update(
        status=Job.Status.CANCELLED, finished_at=timezone.now())
    shards_settle(parent.pk)
