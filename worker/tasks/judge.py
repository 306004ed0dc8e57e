"""Celery tasks for the judge stage (thin wrappers: take a job id, call one service)."""
from celery import shared_task

from ..jobs import job_context

__all__ = ["judge"]


@shared_task(name="worker.judge")
def judge(job_id: int) -> dict:
    """Execute the judge run named in the job's params ({"run_id": ..., "limit": ...}); resumes a stopped run."""
    from judge.models import JudgeRun
    from judge.services import judge_run_execute

    with job_context(job_id) as handle:
        params = handle.job.params
        run = JudgeRun.objects.get(pk=params["run_id"])
        handle.log(f"judge run {run.name}: model {run.model_id}, prompt {run.prompt_version}")
        summary = judge_run_execute(run=run, limit=params.get("limit"), progress=handle.progress)
        handle.job.result = summary
        handle.log(f"judged {summary['items']} items: {summary['ratings']} ratings, consistency {summary['consistency']}")
    return {"job": job_id}
