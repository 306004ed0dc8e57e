"""A judge run spread over TWO real Celery workers (issue 19): both take shards, the result equals a
one-shard run's, cancel stops all, and a worker lost mid-shard has its shard redelivered.

Two prefork workers (one pool process each, one torch thread each, node names w1 and w2) serve
the whole module; the real SmolLM2 judges real SPC turns. The in-process judge is deterministic,
so a run in two shards must store exactly the verdicts of a run in one.
"""
import signal

import psutil
import pytest

from annotation.models import Rating
from judge.devdata import spc_judge_pairs
from judge.models import JudgeRun, JudgeVerdict
from judge.services import judge_run_create
from tests.conftest import shared_file, start_celery_worker, wait_for
from tests.judge.conftest import study_make
from worker.models import Job
from worker.services import job_cancel, job_launch, job_retry

pytestmark = pytest.mark.slow
STOPPED = (Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED)


@pytest.fixture(scope="module")
def two_workers(django_db_setup, django_db_blocker):
    """{"w1": Popen, "w2": Popen}: two prefork workers on the test database and broker."""
    with django_db_blocker.unblock():
        first = start_celery_worker(pool="prefork", name="w1")
        second = start_celery_worker(pool="prefork", name="w2", purge=False)
        workers = {"w1": next(first), "w2": next(second)}
    yield workers
    for gen in (first, second):
        next(gen, None)  # stops the worker


@pytest.fixture(scope="module")
def pairs():
    return spc_judge_pairs(shared_file("spc/Synthetic-Persona-Chat_test.csv"), n=20)


def _run(study, name: str) -> JudgeRun:
    # One item per batch: every prompt is scored in the same batch whatever shard it falls in.
    return judge_run_create(study=study, model_id="smollm2", name=name, min_option_mass=0.0,
                            settings={"items_per_batch": 1})


def _launch(run: JudgeRun, shards: int) -> Job:
    return job_launch(kind=Job.Kind.JUDGE, task="worker.judge", params={"run_id": run.pk, "shards": shards})


def _finished(job: Job, workers, timeout: float = 600) -> Job:
    job = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=STOPPED).first(), timeout=timeout, interval=1)
    logs = "\n".join(p.log_path.read_text()[-2000:] for p in workers.values())
    assert job.status == Job.Status.SUCCEEDED, f"{job.error}\n{logs}"
    return job


def _verdicts(run: JudgeRun) -> dict:
    return {(v.item_id, v.question, v.baseline_side): v.probabilities for v in JudgeVerdict.objects.filter(run=run)}


def _ratings(run: JudgeRun) -> dict:
    return {(r.item_id, r.question): (r.choice, r.confidence)
            for r in Rating.objects.filter(rater=run.name, is_current=True)}


def test_two_workers_share_a_run_and_its_verdicts_equal_a_one_shard_run(transactional_db, two_workers, pairs):
    study = study_make(pairs[:6], slug="shards-equal")
    sharded_run, whole_run = _run(study, "LLM-two-shards"), _run(study, "LLM-one-shard")

    parent = _finished(_launch(sharded_run, shards=2), two_workers)
    shards = list(parent.children.order_by("pk"))
    assert [s.params["range"] for s in shards] == [[0, 3], [3, 6]]
    assert all(s.status == Job.Status.SUCCEEDED for s in shards)
    # Each worker judged one shard (node names, not the shared host name).
    assert {s.worker_host.split("@")[0] for s in shards} == {"w1", "w2"}
    assert parent.progress_done == parent.progress_total == 6 * 4 * 2
    assert parent.result["shards"] == 2 and parent.result["items"] == 6 and parent.result["ratings"] == 24

    whole = _finished(_launch(whole_run, shards=1), two_workers)
    assert not whole.children.exists()
    assert _verdicts(sharded_run).keys() == _verdicts(whole_run).keys() and len(_verdicts(whole_run)) == 48
    for key, probabilities in _verdicts(whole_run).items():
        assert _verdicts(sharded_run)[key] == pytest.approx(probabilities, abs=1e-6), key
    assert _ratings(sharded_run) == _ratings(whole_run) and len(_ratings(whole_run)) == 24

    # The reliability verdict: once, over the whole run, as for the one-shard run.
    sharded_run.refresh_from_db()
    whole_run.refresh_from_db()
    assert sharded_run.status == JudgeRun.Status.SUCCEEDED
    assert sharded_run.reliability["verdict"] == whole_run.reliability["verdict"]
    assert sharded_run.summary["consistency"] == whole_run.summary["consistency"]
    assert sharded_run.summary["computed"] == 48


def test_cancel_on_the_parent_stops_every_shard_and_retry_resumes_each(transactional_db, two_workers, pairs):
    study = study_make(pairs, slug="shards-cancel")
    run = _run(study, "LLM-cancelled")
    parent = _launch(run, shards=2)
    # Both shards running on their workers and past their first item.
    wait_for(lambda: Job.objects.filter(parent=parent, status=Job.Status.RUNNING, progress_done__gte=8).count() == 2,
             timeout=600, interval=0.5)
    job_cancel(job=Job.objects.get(pk=parent.pk))

    parent = wait_for(lambda: Job.objects.filter(pk=parent.pk, status__in=STOPPED).first(), timeout=120)
    assert parent.status == Job.Status.CANCELLED
    assert set(parent.children.values_list("status", flat=True)) == {Job.Status.CANCELLED}
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.CANCELLED and not run.reliability
    kept = {v.pk: v.probabilities for v in JudgeVerdict.objects.filter(run=run)}
    assert 16 <= len(kept) < 20 * 4 * 2

    # Retry on the parent reruns the cancelled shards; each resumes where it stopped.
    parent = _finished(job_retry(job=parent), two_workers)
    assert parent.children.count() == 2 and set(parent.children.values_list("attempts", flat=True)) == {2}
    assert sum(s.result["computed"] for s in parent.children.all()) == 20 * 4 * 2 - len(kept)
    assert {v.pk: v.probabilities for v in JudgeVerdict.objects.filter(pk__in=kept)} == kept
    assert Rating.objects.filter(rater=run.name).count() == Rating.objects.filter(rater=run.name, is_current=True).count() == 80
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.SUCCEEDED and run.reliability["verdict"]


def test_a_worker_killed_mid_shard_has_the_shard_redelivered_and_the_run_completes_once(
    transactional_db, two_workers, pairs
):
    study = study_make(pairs[:12], slug="shards-killed")
    run = _run(study, "LLM-killed")
    parent = _launch(run, shards=2)
    victim = wait_for(lambda: Job.objects.filter(
        parent=parent, status=Job.Status.RUNNING, progress_done__gte=8, progress_done__lt=40).first(),
        timeout=600, interval=0.2)
    worker = two_workers[victim.worker_host.split("@")[0]]
    (child,) = psutil.Process(worker.pid).children()  # the pool process running the shard
    child.send_signal(signal.SIGKILL)

    parent = _finished(parent, two_workers)
    victim.refresh_from_db()
    assert victim.status == Job.Status.SUCCEEDED and victim.attempts == 2  # redelivered, resumed
    assert "WorkerLostError" in worker.log_path.read_text()
    # Every (item, question) rated exactly once: no duplicate, no retired row.
    assert Rating.objects.filter(rater=run.name).count() == 12 * 4
    assert Rating.objects.filter(rater=run.name, is_current=True).count() == 12 * 4
    assert JudgeVerdict.objects.filter(run=run).count() == 12 * 4 * 2
    assert parent.progress_done == parent.progress_total == 12 * 4 * 2
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.SUCCEEDED and run.reliability["verdict"]


def test_augmentation_and_icl_in_shards_write_each_sample_once_as_one_worker_would(transactional_db, two_workers):
    from modeling.importers.service import dataset_import
    from modeling.models import Dataset, LLMCache, Response, Sample, System

    dataset_import(kind="spc", path=shared_file("spc/Synthetic-Persona-Chat_test.csv"), limit=1, split="test")
    dataset = Dataset.objects.get(name="spc")
    samples = Sample.objects.filter(dataset=dataset, split="test").order_by("pk")
    params = {"dataset": "spc", "split": "test", "model": "smollm2", "limit": 4, "batch_size": 2}

    whole = _finished(job_launch(kind=Job.Kind.AUGMENT, task="worker.augment", params={**params, "shards": 1}),
                      two_workers)
    one_worker = list(samples[:4].values_list("pk", "generic_response"))
    assert whole.result["generated"] == 4 and all(text for _, text in one_worker)
    # Forget them (and the cache), then the same job in two shards.
    samples.update(generic_response="", generic_model="", generic_prompt_version="")
    LLMCache.objects.all().delete()
    parent = _finished(job_launch(kind=Job.Kind.AUGMENT, task="worker.augment", params={**params, "shards": 2}),
                       two_workers)
    shards = list(parent.children.order_by("pk"))
    assert [s.params["range"] for s in shards] == [[0, 2], [2, 4]]
    assert parent.result["samples"] == 4 and parent.result["generated"] == 4 and parent.result["shards"] == 2
    assert list(samples[:4].values_list("pk", "generic_response")) == one_worker  # greedy: the same text
    rest = [text for _, text in samples.values_list("pk", "generic_response")[4:]]
    assert rest and not any(rest)  # the limit holds across shards

    icl = _finished(job_launch(kind=Job.Kind.ICL, task="worker.icl", params={
        "dataset": "spc", "split": "test", "method": "icl_hist", "n_shot": 0, "model": "smollm2", "limit": 4,
        "batch_size": 2, "shards": 2}), two_workers)
    assert icl.children.count() == 2 and set(icl.children.values_list("status", flat=True)) == {"succeeded"}
    (system,) = System.objects.filter(pk__in=icl.result["system_ids"])
    assert system.status == System.Status.GENERATED
    assert system.config["run"]["responses"] == 4 and system.config["run"]["generated"] == 4
    assert system.config["run"]["degenerate"]["checked"] == 4
    assert sorted(Response.objects.filter(system=system).values_list("sample_id", flat=True)) == [p for p, _ in one_worker]
