"""Celery tasks for the judge stage (thin wrappers: take a job id, call one service)."""
from celery import shared_task
from django.utils import timezone

from ..jobs import JobHandle, job_context
from ..models import Job
from ..shards import job_shards, shard_range, shard_ranges, shards_dispatch

__all__ = ["judge"]


@shared_task(name="worker.judge")
def judge(job_id: int) -> dict:
    """Execute a judge run; resumes a stopped one.

    Job params: {"run_id", "limit"} from ``run_judge --queue``, or the launch form's and the
    pipeline's {"study": slug, "model", "name", "limit", "prompt_version", "min_option_mass"}, which create the run
    (or find the one of that name, to resume it); optional "shards" (worker/shards.py): the run's
    items split into that many shard jobs that the queue's free workers judge in parallel. A
    shard job (params "run_id" and "range") judges its items only.
    """
    # lazy: at call time: a worker loads a stage's services when it runs that stage's job
    from annotation.models import Study
    from judge.models import JudgeRun
    from judge.services import judge_default_model, judge_run_create, judge_run_execute, judge_run_items

    if Job.objects.filter(pk=job_id, status=Job.Status.SUCCEEDED, params__has_key="range").exists():
        return {"job": job_id}  # a shard delivered twice (redelivery after it finished): nothing to do
    with job_context(job_id) as handle:
        params = handle.job.params
        if params.get("run_id"):
            run = JudgeRun.objects.get(pk=params["run_id"])
        else:
            run = judge_run_create(
                study=Study.objects.get(slug=params["study"]), model_id=params.get("model") or judge_default_model(),
                name=params.get("name") or None, prompt_version=params.get("prompt_version") or None,
                limit=params.get("limit"), min_option_mass=params.get("min_option_mass"),
            )
        item_range = shard_range(handle.job)
        if item_range is not None:
            handle.log(f"judge run {run.name}: shard {params.get('shard')}/{params.get('shards')}, "
                       f"items {item_range[0] + 1}-{item_range[1]}")
            out = judge_run_execute(run=run, limit=params.get("limit"), progress=handle.progress, item_range=item_range)
            handle.job.result = {"run": run.name, "run_id": run.pk, **out}
            handle.log(f"judged {out['items']} items ({out['computed']} prompts scored)")
            return {"job": job_id}
        items = len(judge_run_items(run=run, limit=params.get("limit")))
        shards = job_shards(handle.job, items)
        if shards > 1:
            ranges = shard_ranges(items, shards)
            shards_dispatch(parent=handle.job, ranges=ranges, params={"run_id": run.pk, "limit": params.get("limit")},
                            units_per_range_unit=run.study.questions.count() * 2)
            handle.detached = True
            handle.job.result = {"run": run.name, "run_id": run.pk, "shards": len(ranges)}
            handle.log(f"judge run {run.name}: {items} items in {len(ranges)} shards")
            return {"job": job_id}
        handle.log(f"judge run {run.name}: model {run.model_id}, prompt {run.prompt_version}")
        summary = judge_run_execute(run=run, limit=params.get("limit"), progress=handle.progress)
        handle.job.result = summary
        _log_summary(handle, run.name, summary)
    return {"job": job_id}


def _log_summary(handle, name: str, summary: dict) -> None:
    handle.log(f"judged {summary['items']} items: {summary['ratings']} ratings, {summary['abstained']} abstentions, "
               f"consistency {summary['consistency']}")
    if summary["reliability"]["verdict"] != "reliable":
        handle.log(f"judge run {name} is {summary['reliability']['verdict']}: "
                   + "; ".join(summary["reliability"]["reasons"]))


def judge_shards_finish(parent: Job, shards: list[Job]) -> dict:
    """All shards of a judge run succeeded: its summary and reliability verdict, once, over every item
    (the shards' computed prompts and server token usage summed; seconds since the parent started)."""
    # lazy: at call time: a worker loads a stage's services when it runs that stage's job
    from judge.models import JudgeRun
    from judge.services import judge_run_finish, judge_run_items

    run = JudgeRun.objects.get(pk=shards[0].params["run_id"])
    usage: dict = {}
    for shard in shards:
        for key, value in (shard.result.get("usage") or {}).items():
            usage[key] = usage.get(key, 0) + value
    seconds = (timezone.now() - parent.started_at).total_seconds() if parent.started_at else 0.0
    summary = judge_run_finish(
        run=run, items=judge_run_items(run=run, limit=shards[0].params.get("limit")),
        computed=sum(int(s.result.get("computed") or 0) for s in shards), seconds=seconds, usage=usage,
    )
    _log_summary(JobHandle(job=parent), run.name, summary)
    return summary


def judge_shards_stopped(parent: Job, status: str) -> None:
    """The shards of a judge run stopped, not all succeeded: the run is failed or cancelled (resumable)."""
    # lazy: at call time: a worker loads a stage's services when it runs that stage's job
    from judge.models import JudgeRun

    first = parent.children.order_by("pk").first()
    run_id = first.params.get("run_id") if first else None
    if run_id:
        JudgeRun.objects.filter(pk=run_id).update(
            status=JudgeRun.Status.FAILED if status == Job.Status.FAILED else JudgeRun.Status.CANCELLED)
