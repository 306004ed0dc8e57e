"""The augment and ICL jobs on a real Celery worker: launched like the admin page does, run with the real model."""
import pytest

from modeling.importers.service import dataset_import
from modeling.models import Sample, System
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

    icl = job_launch(kind=Job.Kind.ICL, task="worker.icl",
                     params={"dataset": "spc", "split": "test", "method": "icl_tst", "n_shot": 0, "limit": 2})
    job = wait_for(lambda: _finished(icl), timeout=600, interval=1)
    assert job.status == Job.Status.SUCCEEDED, job.error + job.traceback
    system = System.objects.get(pk=job.result["system_ids"][0])
    assert system.method == "icl_tst" and system.responses.count() == 2
    log = celery_worker_process.log_path.read_text()
    # One model load for both jobs: the second job reused the worker's model.
    assert log.count("loading model smollm2") == 1
