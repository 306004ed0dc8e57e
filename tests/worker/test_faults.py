"""A worker lost in the middle of training: the job is requeued and resumes from its last checkpoint."""
import signal

import psutil
import pytest

from tests.conftest import start_celery_worker, wait_for
from tests.modeling.test_grag_services import make_dataset
from worker.models import Job
from worker.services import job_launch


@pytest.fixture
def prefork_worker(transactional_db, settings, tmp_path, monkeypatch):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    monkeypatch.setenv("ARTIFACTS_DIR", str(tmp_path / "artifacts"))  # the worker's checkpoints
    yield from start_celery_worker(pool="prefork")


@pytest.mark.slow
def test_a_worker_killed_during_training_requeues_the_job_and_it_resumes_from_the_checkpoint(prefork_worker):
    make_dataset()
    params = {"dataset": "tiny", "method": "presft_hist", "backbone": "tiny:llama", "system_name": "tiny-killed",
              "epochs": 30, "max_steps": 60, "batch_size": 2, "lr": 1e-3, "split": "train",
              "config": {"checkpoint_every": 10}}
    job = job_launch(kind=Job.Kind.TRAIN, task="worker.train", params=params)
    wait_for(lambda: Job.objects.filter(pk=job.pk, progress_done__gte=15).exists(), timeout=240)
    running = Job.objects.get(pk=job.pk)
    assert running.status == Job.Status.RUNNING and running.progress_done < 60

    (child,) = psutil.Process(prefork_worker.pid).children()  # the pool process running the task
    child.send_signal(signal.SIGKILL)

    done = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=["succeeded", "failed"]).first(), timeout=300)
    assert done.status == Job.Status.SUCCEEDED, done.error + done.traceback
    assert done.attempts == 2  # redelivered after the loss (acks_late + reject_on_worker_lost)
    assert done.result["resumed"] is True and done.result["steps"] == 60
    assert "WorkerLostError" in prefork_worker.log_path.read_text()
