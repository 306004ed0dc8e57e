"""The augment and ICL jobs on a real Celery worker: launched like the admin page does, run with the real model."""
import pytest

from modeling.importers.service import dataset_import
from modeling.models import Sample, System
from modeling.text import flag_counts, flag_line
from tests.conftest import shared_file, wait_for
from worker.models import Job
from worker.services import job_launch

pytestmark = pytest.mark.slow


def _finished(job: Job) -> Job | None:
    job.refresh_from_db()
    return job if job.status in (Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED) else None


def test_augment_and_icl_jobs_run_on_a_worker_that_loads_the_model_once(celery_worker_process):
    dataset_import(kind="spc", path=shared_file("spc/Synthetic-Persona-Chat_test.csv"), limit=1, split="test")
    augment = job_launch(kind=Job.Kind.AUGMENT, task="worker.augment",
                         params={"dataset": "spc", "split": "test", "model": "smollm2", "limit": 2, "batch_size": 2})
    job = wait_for(lambda: _finished(augment), timeout=600, interval=1)
    assert job.status == Job.Status.SUCCEEDED, job.error + job.traceback
    assert job.result["generated"] == 2 and job.result["prompt_version"] == "spc-v1"
    assert (job.progress_done, job.progress_total) == (2, 2)
    assert Sample.objects.exclude(generic_response="").filter(generic_model="smollm2").count() == 2
    # The summary counts degenerate generations, from the flags stored with each R_G.
    flags = [s.generic_meta["degenerate"] for s in Sample.objects.filter(generic_model="smollm2")]
    assert job.result["degenerate"] == flag_counts(flags) and job.result["degenerate"]["checked"] == 2
    assert flag_line(job.result["degenerate"]) in job.log_tail

    icl = job_launch(kind=Job.Kind.ICL, task="worker.icl",
                     params={"dataset": "spc", "split": "test", "method": "icl_tst", "n_shot": 0, "limit": 2})
    job = wait_for(lambda: _finished(icl), timeout=600, interval=1)
    assert job.status == Job.Status.SUCCEEDED, job.error + job.traceback
    system = System.objects.get(pk=job.result["system_ids"][0])
    assert system.method == "icl_tst" and system.responses.count() == 2
    counts = job.result["degenerate"][system.name]
    assert counts == flag_counts(r.meta["degenerate"] for r in system.responses.all()) and counts["checked"] == 2
    assert f"{system.name}: {flag_line(counts)}" in job.log_tail
    log = celery_worker_process.log_path.read_text()
    # One model load for both jobs: the second job reused the worker's model.
    assert log.count("loading model smollm2") == 1
