"""Shards without workers: how work is split, how many shards a job gets, and how the parent job
follows its shards (status, combined progress and ETA, the shard named on failure), on the page too.
The two-worker runs are in test_shards_workers.py."""
import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from worker.forms import JudgeForm
from worker.jobs import JobHandle
from worker.models import Job
from worker.shards import shard_ranges, shards_count, shards_settle


@pytest.mark.parametrize("units,shards", [(40, 2), (41, 3), (7, 7), (3, 5), (1, 4), (100, 1)])
def test_shard_ranges_are_disjoint_contiguous_and_cover_the_work_evenly(units, shards):
    ranges = shard_ranges(units, shards)
    assert len(ranges) == min(units, shards)
    covered = [i for start, stop in ranges for i in range(start, stop)]
    assert covered == list(range(units))  # every unit once, in order
    sizes = [stop - start for start, stop in ranges]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_shard_count_is_the_launch_field_else_from_the_settings_and_the_work_size(settings):
    settings.JOB_SHARDS, settings.JOB_SHARD_MIN_UNITS = 1, 8
    assert shards_count(2000) == 1  # the default keeps a job on one worker
    settings.JOB_SHARDS = 4
    assert shards_count(40) == 4 and shards_count(20) == 2 and shards_count(10) == 1
    assert shards_count(40, requested=3) == 3 and shards_count(2, requested=3) == 2
    with pytest.raises(ValueError, match="at least 1"):
        shards_count(40, requested=0)


def _sharded(kind=Job.Kind.PING, n=2) -> tuple[Job, list[Job]]:
    parent = Job.objects.create(kind=kind, status=Job.Status.RUNNING, params={"sharded": n})
    shards = [Job.objects.create(kind=kind, parent=parent, params={"range": [i, i + 1], "shard": i + 1, "shards": n},
                                 progress_total=10) for i in range(n)]
    return parent, shards


def _set(job: Job, **fields) -> None:
    Job.objects.filter(pk=job.pk).update(**fields)


@pytest.mark.django_db
def test_the_parent_runs_while_a_shard_runs_and_sums_their_progress_and_rates():
    parent, (one, two) = _sharded()
    _set(one, status=Job.Status.RUNNING, progress_done=4, rate=2.0)
    _set(two, status=Job.Status.SUCCEEDED, progress_done=10, rate=5.0)
    parent = shards_settle(parent.pk)
    parent.refresh_from_db()
    assert parent.status == Job.Status.RUNNING and parent.finished_at is None
    assert (parent.progress_done, parent.progress_total) == (14, 20)
    assert parent.rate == 2.0  # only running shards add to the rate
    assert parent.eta_seconds == pytest.approx(6 / 2.0)


@pytest.mark.django_db
def test_the_parents_eta_is_its_slowest_shards_and_its_worker_lists_the_shards_workers():
    """Review: the parent said 3 min 27 s (summed rate) while its slower shard said 4 min 12 s."""
    parent, (fast, slow, queued) = _sharded(n=3)
    _set(fast, status=Job.Status.RUNNING, progress_done=2, rate=2.0, worker_host="w1@lab")  # 8 left: 4 s
    _set(slow, status=Job.Status.RUNNING, progress_done=6, rate=0.5, worker_host="w2@lab")  # 4 left: 8 s
    shards_settle(parent.pk)
    parent.refresh_from_db()
    assert parent.rate == 2.5  # throughput: the running shards' rates summed
    # queued: 10 left at the running shards' mean rate 1.25/s = 8 s; the slow shard also 8 s
    assert parent.eta_seconds == pytest.approx(8.0)
    assert parent.worker_host == "w1@lab, w2@lab"
    _set(queued, status=Job.Status.RUNNING, progress_total=30, rate=1.0, worker_host="w1@lab")  # 30 s
    shards_settle(parent.pk)
    parent.refresh_from_db()
    assert parent.eta_seconds == pytest.approx(30.0) and parent.worker_host == "w1@lab, w2@lab"


@pytest.mark.django_db
def test_a_failed_shard_fails_the_parent_by_name_once_none_runs():
    parent, (one, two) = _sharded()
    _set(one, status=Job.Status.FAILED, error="RuntimeError: out of memory")
    _set(two, status=Job.Status.RUNNING)
    assert shards_settle(parent.pk).status == Job.Status.RUNNING
    _set(two, status=Job.Status.SUCCEEDED)
    parent = shards_settle(parent.pk)
    assert parent.status == Job.Status.FAILED and parent.finished_at is not None
    assert parent.error == f"shard 1/2 (job #{one.pk}) failed: RuntimeError: out of memory"


@pytest.mark.django_db
def test_the_parent_succeeds_when_every_shard_did_and_is_finished_once():
    parent, shards = _sharded()
    for shard in shards:
        _set(shard, status=Job.Status.SUCCEEDED, progress_done=10)
    first = shards_settle(parent.pk)
    assert first.status == Job.Status.SUCCEEDED and first.result == {"shards": 2}
    again = shards_settle(parent.pk)  # a late caller: nothing changes
    assert again.finished_at == first.finished_at


@pytest.mark.django_db
def test_a_shard_stops_when_its_parent_is_cancelled():
    from modeling.progress import Cancelled

    parent, (one, _) = _sharded()
    _set(parent, cancel_requested=True)
    one.refresh_from_db()
    with pytest.raises(Cancelled):
        JobHandle(job=one).progress(1, 10)


@pytest.mark.django_db
def test_the_job_page_lists_the_shards_with_their_range_and_worker_and_the_combined_progress(client):
    client.force_login(User.objects.create_user("admin", password="pw", is_staff=True))
    parent, (one, two) = _sharded(kind=Job.Kind.JUDGE)
    _set(one, status=Job.Status.RUNNING, progress_done=3, rate=1.5, worker_host="w1@lab")
    _set(two, status=Job.Status.RUNNING, progress_done=5, rate=2.5, worker_host="w2@lab")
    shards_settle(parent.pk)
    page = client.get(reverse("worker:job_detail", args=[parent.pk])).content.decode()
    assert "<h2>Shards</h2>" in page
    assert "items 1–1 on w1@lab" in page and "items 2–2 on w2@lab" in page
    assert "8 / 20" in page and "4.00 per s" in page


@pytest.mark.django_db
def test_the_judge_launch_form_refuses_zero_shards():
    form = JudgeForm(data={"model": "smollm2", "shards": 0})
    assert not form.is_valid() and "shards" in form.errors


@pytest.mark.django_db
@pytest.mark.parametrize("args", [["--shards", "0", "--queue"], ["--shards", "2"]])
def test_run_judge_refuses_shards_below_one_or_without_the_queue(args):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--shards needs --queue"):
        call_command("run_judge", "any-study", *args)


@pytest.mark.django_db
def test_retrying_one_shard_of_a_cancelled_job_runs_it_instead_of_stopping_it_at_once():
    """Review finding: the parent's stop flag stopped the retried shard before it started, while the
    page said it was queued again."""
    from worker.services import job_cancel, job_retry

    parent, (one, two) = _sharded()
    _set(one, status=Job.Status.RUNNING)
    job_cancel(job=Job.objects.get(pk=parent.pk))
    _set(one, status=Job.Status.CANCELLED)
    shards_settle(parent.pk)
    retried = job_retry(job=Job.objects.get(pk=one.pk))
    assert retried.status == Job.Status.QUEUED
    parent.refresh_from_db()
    assert not parent.cancel_requested and parent.status in (Job.Status.QUEUED, Job.Status.RUNNING)
    JobHandle(job=retried).progress(1, 10)  # runs: no Cancelled from the parent's flag
