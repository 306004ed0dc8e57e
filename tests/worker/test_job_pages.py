"""Staff launch and watch jobs in the browser; bad parameters queue nothing."""
import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from tests.conftest import wait_for
from worker.models import Job


@pytest.fixture
def staff_client(client, db):
    user = User.objects.create_user("admin", password="pw", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_job_pages_are_staff_only(client):
    job = Job.objects.create(kind=Job.Kind.PING)
    for url in [reverse("worker:job_list"), reverse("worker:job_detail", args=[job.pk]), reverse("worker:job_launch", args=["import"])]:
        assert client.get(url).status_code == 302  # anonymous -> login
    User.objects.create_user("ann", password="pw")
    client.login(username="ann", password="pw")
    for url in [reverse("worker:job_list"), reverse("worker:job_detail", args=[job.pk])]:
        assert client.get(url).status_code == 403


def test_bad_launch_parameters_show_form_errors_and_queue_nothing(staff_client, settings, tmp_path):
    settings.IMPORT_ROOTS = [tmp_path]
    response = staff_client.post(reverse("worker:job_launch", args=["import"]),
                                 {"kind": "spc", "path": str(tmp_path / "no" / "such" / "file.csv")})
    assert response.status_code == 200
    assert "does not exist on this host" in response.content.decode()
    response = staff_client.post(reverse("worker:job_launch", args=["train"]), {"method": "postgrag", "epochs": 0})
    assert response.status_code == 200
    body = response.content.decode()
    assert "This field is required" in body and "greater than or equal to 1" in body
    assert Job.objects.count() == 0


def test_unknown_job_kind_is_404(staff_client):
    assert staff_client.get(reverse("worker:job_launch", args=["nonsense"])).status_code == 404


def test_job_list_polls_only_while_jobs_are_active(staff_client):
    Job.objects.create(kind=Job.Kind.PING, status=Job.Status.SUCCEEDED)
    page = staff_client.get(reverse("worker:job_list")).content.decode()
    assert 'hx-trigger="every 2s"' not in page
    Job.objects.create(kind=Job.Kind.PING, status=Job.Status.RUNNING, progress_done=3, progress_total=10)
    fragment = staff_client.get(reverse("worker:job_list"), headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 2s"' in fragment and "<html" not in fragment
    assert 'value="3" max="10"' in fragment


def test_cancel_a_queued_job_marks_it_cancelled_and_sets_the_stop_flag(staff_client):
    job = Job.objects.create(kind=Job.Kind.PING)
    page = staff_client.get(reverse("worker:job_detail", args=[job.pk])).content.decode()
    assert "<summary>Cancel…</summary>" in page and 'name="confirm" value="yes"' in page
    staff_client.post(reverse("worker:job_cancel", args=[job.pk]), {"confirm": "yes"})
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED and job.cancel_requested
    assert job.log_tail.splitlines() == ["cancel requested by admin",
                                         "stopped: cancelled before it started (Retry runs it)"]


def test_cancel_without_its_confirmation_asks_for_it_and_cancels_nothing(staff_client):
    job = Job.objects.create(kind=Job.Kind.PING, status=Job.Status.RUNNING)
    response = staff_client.post(reverse("worker:job_cancel", args=[job.pk]))
    assert response.status_code == 400
    assert "Nothing was cancelled yet" in response.content.decode()
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and not job.cancel_requested and not job.log_tail


@pytest.mark.django_db
def test_a_running_job_logs_the_cancel_request_and_its_stop():
    from worker.jobs import job_context
    from worker.services import job_cancel

    job = Job.objects.create(kind=Job.Kind.PING)
    with job_context(job.pk) as handle:
        handle.log("working")
        job_cancel(job=Job.objects.get(pk=job.pk), by="admin")
        handle.progress(1, 10)  # the loop's check: raises Cancelled, which job_context records
    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert job.log_tail.splitlines() == ["working", "cancel requested by admin", "stopped: cancelled (Retry resumes it)"]


def test_retry_refuses_a_succeeded_job(staff_client):
    job = Job.objects.create(kind=Job.Kind.PING, status=Job.Status.SUCCEEDED)
    response = staff_client.post(reverse("worker:job_retry", args=[job.pk]), follow=True)
    assert "Only failed or cancelled jobs can be retried" in response.content.decode()


@pytest.mark.slow
def test_launch_from_the_browser_runs_on_a_real_worker_and_retry_reruns(celery_worker_process, client):
    user = User.objects.create_user("admin", password="pw", is_staff=True)
    client.force_login(user)
    from worker.services import job_launch

    job = job_launch(kind=Job.Kind.PING, task="worker.ping", user=user)
    wait_for(lambda: Job.objects.get(pk=job.pk).status == Job.Status.SUCCEEDED)
    page = client.get(reverse("worker:job_detail", args=[job.pk])).content.decode()
    assert "Succeeded" in page and "pong" in page
    Job.objects.filter(pk=job.pk).update(status=Job.Status.FAILED)
    client.post(reverse("worker:job_retry", args=[job.pk]))
    done = wait_for(lambda: Job.objects.filter(pk=job.pk, status=Job.Status.SUCCEEDED, attempts=2).first())
    assert done.attempts == 2


def test_icl_launch_form_parses_seeds_and_refuses_bad_ones(staff_client):
    from modeling.models import Dataset
    from worker.forms import ICLForm

    Dataset.objects.create(name="spc", kind="spc")
    form = ICLForm({"dataset": "spc", "split": "test", "method": "icl_hist", "n_shot": 3, "seeds": "0, 1,2",
                    "shot_split": "valid", "model": "smollm2", "batch_size": 8})
    assert form.is_valid(), form.errors
    assert form.job_params()["seeds"] == [0, 1, 2] and form.job_params()["shot_split"] == "valid"
    bad = ICLForm({"dataset": "spc", "split": "test", "method": "icl_hist", "n_shot": 3, "seeds": "a,b",
                   "shot_split": "train", "model": "smollm2", "batch_size": 8})
    assert not bad.is_valid() and "whole numbers" in str(bad.errors["seeds"])
