import pytest

from tests.conftest import wait_for
from worker.models import Job
from worker.services import BrokerUnavailable, job_launch
from worker.tasks.core import ping


@pytest.mark.slow
def test_real_worker_runs_a_task_through_the_broker_and_writes_the_database(celery_worker_process, settings):
    from django.db import connection

    job = job_launch(kind=Job.Kind.PING, task="worker.ping")
    done = wait_for(lambda: Job.objects.filter(pk=job.pk, status=Job.Status.SUCCEEDED).first(), timeout=60)
    assert done.result["pong"] is True
    assert done.result["database"] == connection.vendor  # the worker wrote to the same database
    assert done.worker_host and done.started_at and done.finished_at
    assert done.attempts == 1


@pytest.mark.django_db
def test_launch_with_a_dead_broker_fails_clearly_and_creates_no_job(settings):
    from grag_site.celery import app

    old = app.conf.broker_write_url
    app.conf.broker_write_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    try:
        with pytest.raises(BrokerUnavailable, match="did not answer"):
            job_launch(kind=Job.Kind.PING, task=ping)
    finally:
        app.conf.broker_write_url = old
    assert Job.objects.count() == 0


@pytest.fixture
def one_thread_worker(transactional_db, monkeypatch):
    from tests.conftest import start_celery_worker

    monkeypatch.setenv("LLM_CPU_THREADS", "1")
    yield from start_celery_worker(pool="solo")


@pytest.mark.slow
def test_a_worker_runs_torch_on_the_threads_llm_cpu_threads_names(one_thread_worker):
    """The demo gives its worker LLM_CPU_THREADS so a shared CPU does not slow model work ten-fold;
    the worker sets torch's threads for every task, not only the LLM layer's."""
    job = job_launch(kind=Job.Kind.PING, task="worker.ping")
    done = wait_for(lambda: Job.objects.filter(pk=job.pk, status=Job.Status.SUCCEEDED).first(), timeout=90)
    assert done.result["torch_threads"] == 1
