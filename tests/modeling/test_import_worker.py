"""An import launched as a job runs on a real Celery worker (through the broker) and writes the database."""
from pathlib import Path

import pytest

from modeling.models import Conversation, Dataset, Sample
from tests.conftest import wait_for
from worker.models import Job
from worker.services import job_launch

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo" / "demo.jsonl"


@pytest.mark.slow
def test_worker_imports_demo_data_and_reports_a_broken_file(celery_worker_process, tmp_path):
    job = job_launch(kind=Job.Kind.IMPORT, task="worker.import_dataset",
                     params={"kind": "jsonl", "path": str(DEMO), "name": "demo"})
    done = wait_for(lambda: Job.objects.filter(pk=job.pk).exclude(
        status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).first(), timeout=120)
    assert done.status == Job.Status.SUCCEEDED, done.error
    assert done.result["dataset"] == "demo" and done.result["conversations"] == 35
    assert Sample.objects.filter(dataset__name="demo").count() == done.result["samples"] == 70

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "turns": [{"role": "user", "text": "hi"}]}\n{"id": "b", "turns": [}\n')
    job = job_launch(kind=Job.Kind.IMPORT, task="worker.import_dataset", params={"kind": "jsonl", "path": str(broken)})
    failed = wait_for(lambda: Job.objects.filter(pk=job.pk).exclude(
        status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).first(), timeout=120)
    assert failed.status == Job.Status.FAILED
    assert f"{broken}, line 2: not valid JSON" in failed.error
    assert not Dataset.objects.filter(name="broken").exists()
    assert Conversation.objects.count() == 35
