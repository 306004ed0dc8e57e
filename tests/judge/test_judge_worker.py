"""run_judge --queue: the run goes through the broker to a real worker process and lands as ratings."""
import json

import pytest
from django.core.management import call_command

from annotation.models import Rating
from judge.models import JudgeRun
from tests.conftest import wait_for
from worker.models import Job

from .conftest import study_make


@pytest.mark.slow
def test_a_queued_run_is_judged_by_a_worker(celery_worker_process, spc_pairs, capsys):
    study_make(spc_pairs[:1], slug="queued-study")
    call_command("run_judge", "queued-study", "--model", "smollm2", "--name", "LLM-queued", "--queue",
                 "--min-option-mass", "0")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["run"] == "LLM-queued" and out["status"] == "queued"

    finished = (Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED)
    job = wait_for(lambda: Job.objects.filter(pk=out["job"], status__in=finished).first(), timeout=600, interval=1)
    assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n{celery_worker_process.log_path.read_text()[-3000:]}"
    assert job.kind == Job.Kind.JUDGE and job.progress_done == job.progress_total == 8
    assert job.result["ratings"] == 4 and job.result["failed"] == 0
    assert set(job.result["consistency"]) == {"q1", "q2", "q3", "q4"}
    assert Rating.objects.filter(rater="LLM-queued", rater_kind=Rating.RaterKind.LLM, is_current=True).count() == 4
    assert JudgeRun.objects.get(name="LLM-queued").status == JudgeRun.Status.SUCCEEDED
