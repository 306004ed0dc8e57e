"""Job pages read as a product: labelled parameters and results, times to the second, durations,
links to what a job made, a pipeline's stages and back; an ETA from the recent rate."""
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone

from annotation.models import Study
from modeling.models import Dataset, System
from tests.factories import samples_create
from worker.jobs import JobHandle
from worker.models import Job
from worker.pipeline import PipelinePlan, pipeline_create


@pytest.fixture
def staff_client(client, db):
    client.force_login(User.objects.create_user("admin", password="pw", is_staff=True))
    return client


def _finished(job: Job, *, seconds: float, result: dict) -> Job:
    start = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED, started_at=start,
                                         finished_at=start + timedelta(seconds=seconds), result=result)
    job.refresh_from_db()
    return job


def test_a_train_job_shows_labelled_parameters_and_results_not_dicts_or_server_paths(staff_client):
    dataset = Dataset.objects.create(name="spc", kind="spc")
    system = System.objects.create(name="spc-postgrag", method="postgrag", dataset=dataset)
    job = Job.objects.create(kind=Job.Kind.TRAIN, params={
        "dataset": "spc", "method": "postgrag", "system_name": "spc-postgrag", "lr": 0.0001, "beta": 0.01,
        "epochs": 1, "batch_size": 4, "limit": 64})
    _finished(job, seconds=754, result={
        "system": "spc-postgrag", "samples": 64, "valid_samples": 8, "steps": 16, "best_valid_l_p": 3.21,
        "resumed": False, "best_dir": "/srv/secret/var/models/spc-postgrag/best"})
    page = staff_client.get(reverse("worker:job_detail", args=[job.pk])).content.decode()
    for label in ("Learning rate", "C-JEPA weight β", "Batch size", "Optimiser steps", "Best validation loss L_P",
                  "Resumed from a checkpoint"):
        assert f">{label}</th>" in page, label
    assert "{'" not in page and "&#x27;dataset&#x27;" not in page, "a raw dict is printed"
    assert "/srv/secret" not in page and "spc-postgrag/best" in page
    # Times to the second and the duration.
    assert timezone.localtime(job.started_at).strftime("%Y-%m-%d %H:%M:%S") in page
    assert ">Took</th><td>12 min 34 s</td>" in page
    # Links to what it made: the system's page and the dataset's systems.
    assert f'href="{reverse("modeling:system_detail", args=[system.pk])}"' in page
    assert f'href="{reverse("modeling:system_list")}?dataset=spc"' in page


def _spc_with_train_and_test() -> Dataset:
    """A dataset a pipeline's pre-flight check accepts: samples in its training and evaluation splits."""
    dataset = Dataset.objects.create(name="spc", kind="spc")
    for split in ("train", "test"):
        samples_create([{"key": f"spc/{split}/c1/{i}", "reference": "r"} for i in range(2)], dataset=dataset,
                       split=split)
    return dataset


def test_a_pipeline_links_each_stage_and_each_stage_links_back_and_to_its_neighbours(staff_client):
    _spc_with_train_and_test()
    parent, children = pipeline_create(plan=PipelinePlan(dataset="spc", judge=True))
    page = staff_client.get(reverse("worker:job_detail", args=[parent.pk])).content.decode()
    for child in children:
        assert f'href="{reverse("worker:job_detail", args=[child.pk])}"' in page
    # The plan's methods by the paper's names.
    assert ">Baseline</th>\n      <td>PreSFT(Hist)" in page and ">Methods</th>\n      <td>PreSFT(Hist), PostGRAG" in page
    middle = children[2]
    stage = staff_client.get(reverse("worker:job_detail", args=[middle.pk])).content.decode()
    assert f"stage 3 of {len(children)} of" in stage
    assert f'href="{reverse("worker:job_detail", args=[parent.pk])}"' in stage
    assert f'href="{reverse("worker:job_detail", args=[children[1].pk])}" rel="prev"' in stage
    assert f'href="{reverse("worker:job_detail", args=[children[3].pk])}" rel="next"' in stage


def test_a_finished_pipeline_links_its_systems_study_report_and_results_table(staff_client):
    dataset = _spc_with_train_and_test()
    parent, children = pipeline_create(plan=PipelinePlan(dataset="spc"))
    plan = PipelinePlan(**parent.params)  # as run: with its own study slug
    systems = {m: System.objects.create(name=plan.system_name(m), method=m, dataset=dataset) for m in plan.methods}
    study = Study.objects.create(slug=plan.slug())
    for child in children:
        result = {"study": study.slug, "study_id": study.pk, "items": 12} if child.kind == Job.Kind.STUDY else {}
        _finished(child, seconds=5, result=result)
    page = staff_client.get(reverse("worker:job_detail", args=[parent.pk])).content.decode()
    for system in systems.values():
        assert f'href="{reverse("modeling:system_detail", args=[system.pk])}"' in page
    assert f'href="{reverse("annotation:study_manage", args=[study.slug])}"' in page
    assert f'href="{reverse("reports:study_report", args=[study.slug])}"' in page
    from urllib.parse import urlencode

    table = reverse("modeling:table_builder") + "?" + urlencode(
        [("systems", plan.system_name(m)) for m in plan.methods]
        + [("split", "test"), ("baseline", plan.system_name(plan.baseline)),
           ("challengers", plan.system_name(plan.challenger))])
    assert f'href="{table.replace("&", "&amp;")}"' in page


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("start_rate, steady_rate", [(0.1, 2.0), (20.0, 0.1)],
                         ids=["slow start (model warm-up)", "fast start (cached prompts)"])
def test_eta_follows_the_recent_rate_within_50_percent_on_a_steady_job(db, start_rate, steady_rate):
    """The real progress callback writes the ETA to the Job row; after two minutes at another rate,
    a steady rate for two minutes gives an ETA within 50 % of the true remaining time. (The mean
    since the start was 100 % too long after a slow start and 99 % too short after a fast one.)"""
    total = 5000
    job = Job.objects.create(kind=Job.Kind.AUGMENT, status=Job.Status.RUNNING)
    clock = Clock()
    handle = JobHandle(job=job, clock=clock)
    done = 0.0
    handle.progress(0, total)
    for _ in range(120):  # two minutes at the start rate
        clock.now += 1.0
        done += start_rate
        handle.progress(int(done), total)
    checked = 0
    for second in range(1, 241):  # then four minutes at the steady rate
        clock.now += 1.0
        done += steady_rate
        handle.progress(int(done), total)
        if second >= 120 and second % 30 == 0:
            job.refresh_from_db()
            true_eta = (total - int(done)) / steady_rate
            assert job.eta_seconds is not None
            assert abs(job.eta_seconds - true_eta) <= 0.5 * true_eta, (second, job.eta_seconds, true_eta)
            checked += 1
    assert checked == 5


@pytest.mark.django_db
def test_a_generation_job_with_degenerate_outputs_finishes_with_warnings_not_a_plain_success():
    """Review finding: 39 of 46 generic responses flagged, and the job page said a green "Succeeded"."""
    from django.template.loader import render_to_string

    from worker.models import Job

    flagged = Job(kind=Job.Kind.AUGMENT, status=Job.Status.SUCCEEDED,
                  result={"degenerate": {"checked": 46, "flagged": 39, "loop": 13}})
    html = render_to_string("worker/_status.html", {"job": flagged})
    assert "Finished: with warnings (39 of 46 outputs flagged)" in html and "Succeeded" not in html
    clean = Job(kind=Job.Kind.AUGMENT, status=Job.Status.SUCCEEDED, result={"degenerate": {"checked": 46, "flagged": 0}})
    assert "Succeeded" in render_to_string("worker/_status.html", {"job": clean})


def test_a_judge_jobs_reliability_reads_as_its_verdict_and_reasons_and_its_limit_counts_items(staff_client):
    reasons = ["median option mass 0.08 below 0.5: most verdicts abstain", "abstention rate 92 % above 20 %"]
    job = Job.objects.create(kind=Job.Kind.JUDGE, status=Job.Status.SUCCEEDED, result={
        "reliability": {"verdict": "unreliable", "reasons": reasons, "checks": {"option_mass": 0.08}}})
    page = staff_client.get(reverse("worker:job_detail", args=[job.pk])).content.decode()
    row = page[page.index(">Reliability</th>"):]
    row = row[:row.index("</tr>")]
    assert "<strong>unreliable</strong>" in row and all(f"<li>{r}</li>" in row for r in reasons)
    assert "{" not in row and "verdict:" not in row and "reasons" not in row  # no raw dict
    form = staff_client.get(reverse("worker:job_launch", args=["judge"])).content.decode()
    limit = form[form.index('for="id_limit"'):]
    assert "first N items of the study" in limit[:600] and "samples" not in limit[:600]

