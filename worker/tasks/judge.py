"""Celery tasks for the judge stage (thin wrappers: take a job id, call one service)."""
from celery import shared_task

from ..jobs import job_context

__all__ = ["judge"]


@shared_task(name="worker.judge")
def judge(job_id: int) -> dict:
    """Execute a judge run; resumes a stopped one.

    Job params: {"run_id", "limit"} from ``run_judge --queue``, or the launch form's and the
    pipeline's {"study": slug, "model", "name", "limit", "prompt_version", "min_option_mass"}, which create the run
    (or find the one of that name, to resume it).
    """
    # lazy: at call time: a worker loads a stage's services when it runs that stage's job
    from annotation.models import Study
    from judge.models import JudgeRun
    from judge.services import judge_default_model, judge_run_create, judge_run_execute

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
        handle.log(f"judge run {run.name}: model {run.model_id}, prompt {run.prompt_version}")
        summary = judge_run_execute(run=run, limit=params.get("limit"), progress=handle.progress)
        handle.job.result = summary
        handle.log(f"judged {summary['items']} items: {summary['ratings']} ratings, {summary['abstained']} abstentions, "
                   f"consistency {summary['consistency']}")
        if summary["reliability"]["verdict"] != "reliable":
            handle.log(f"judge run {run.name} is {summary['reliability']['verdict']}: "
                       + "; ".join(summary["reliability"]["reasons"]))
    return {"job": job_id}
