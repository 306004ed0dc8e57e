"""The demo's judge stage with SmolLM2 on the bundled demo data: unreliable, and every page and export says why.

`make demo` (worker.management.commands.demo) imports data/demo, trains, generates, then runs the
pipeline's study and judge stages. Training and generation are left out here: the two systems'
responses are the demo data's own generic responses and references. The study and judge stages
run from the demo's PipelinePlan through the same tasks the demo runs, with SmolLM2 at the
default minimum option mass.
"""
import csv
import io
import json

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from annotation.models import Rating, Study
from judge.models import JudgeRun, JudgeVerdict
from modeling.importers.service import dataset_import
from modeling.models import Response, Sample, System
from reports.render import tex_escape
from worker.management.commands.demo import DEMO_DIR
from worker.models import Job
from worker.pipeline import PipelinePlan

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def _stage(plan: PipelinePlan, kind: str) -> Job:
    import worker.tasks  # noqa: F401  (registers every stage's task, as the demo does)
    from grag_site.celery import app
    from worker.registry import task_for_kind

    params = next(params for k, params in plan.stages() if k == kind)
    job = Job.objects.create(kind=kind, params=params)
    app.tasks[task_for_kind(kind)](job.pk)
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    return job


@pytest.fixture
def demo_judge_job(smollm2):
    dataset_import(kind="jsonl", path=str(DEMO_DIR / "demo.jsonl"), name="demo")
    plan = PipelinePlan(dataset="demo", train_split="train", eval_split="test", eval_limit=2)
    baseline = System.objects.create(name=plan.system_name(plan.baseline), method=plan.baseline)
    challenger = System.objects.create(name=plan.system_name(plan.challenger), method=plan.challenger)
    samples = Sample.objects.filter(dataset__name="demo", split="test").exclude(generic_response="").order_by("pk")[:2]
    for sample in samples:
        Response.objects.create(system=baseline, sample=sample, text=sample.generic_response)
        Response.objects.create(system=challenger, sample=sample, text=sample.reference)
    _stage(plan, Job.Kind.STUDY)
    return _stage(plan, Job.Kind.JUDGE), Study.objects.get(slug=plan.slug())


def test_the_demo_judge_run_is_marked_unreliable_with_its_reasons(demo_judge_job):
    job, study = demo_judge_job
    run = JudgeRun.objects.get(study=study)
    reliability = job.result["reliability"]
    assert run.reliability == reliability and run.min_option_mass == 0.5
    assert reliability["verdict"] == "unreliable"
    # SmolLM2 gives the option letters about a tenth of its probability: most verdicts abstain.
    mass = reliability["checks"]["option_mass"]
    assert mass["level"] == "unreliable" and mass["figure"] < 0.5
    assert any(r.startswith(f"median option mass {mass['figure']:.3g} is below 0.5") for r in reliability["reasons"])
    assert reliability["checks"]["abstention_rate"]["level"] == "unreliable"
    verdicts = JudgeVerdict.objects.filter(run=run)
    assert verdicts.count() == 2 * 4 * 2 and verdicts.filter(abstained=True).count() == job.result["abstained"] >= 8
    # Every abstained pair is missing from the ratings; nothing else is.
    abstained_pairs = set(verdicts.filter(abstained=True).values_list("item_id", "question"))
    rated = set(Rating.objects.filter(rater=run.name, is_current=True).values_list("item_id", "question"))
    assert not abstained_pairs & rated and len(abstained_pairs) + len(rated) == 8
    assert sum(job.result["abstentions"].values()) == job.result["abstained"]


def test_the_job_pages_never_show_the_unreliable_demo_run_as_succeeded(demo_judge_job, client):
    job, study = demo_judge_job
    client.force_login(User.objects.create_user("staff", is_staff=True))
    reason = job.result["reliability"]["reasons"][0]

    page = client.get(reverse("worker:job_detail", args=[job.pk])).content.decode()
    assert "Finished: unreliable" in page and reason in page
    assert ">Succeeded<" not in page
    listing = client.get(reverse("worker:job_list")).content.decode()
    row = listing[listing.index(f">{job}<"):]
    row = row[:row.index("</tr>")]
    assert "Finished: unreliable" in row and "Succeeded" not in row

    # A pipeline whose judge stage is not reliable says so beside its own status.
    pipeline = Job.objects.create(kind=Job.Kind.PIPELINE, status=Job.Status.SUCCEEDED)
    Job.objects.filter(pk=job.pk).update(parent=pipeline)
    page = client.get(reverse("worker:job_detail", args=[pipeline.pk])).content.decode()
    assert "Not reliable:" in page and f"{job}</a> (unreliable: {reason}" in page
    assert "Finished: unreliable" in page  # the stage's line in the list of stages

    report_page = client.get(reverse("reports:study_report", args=[study.slug])).content.decode()
    run = JudgeRun.objects.get(study=study)
    assert f"<strong>{run.name}</strong>:" in report_page and reason in report_page

    def download(fmt):
        response = client.get(reverse("reports:study_report_download", args=[study.slug, fmt]))
        assert response.status_code == 200
        return response.content.decode()

    report = json.loads(download("json"))
    assert report["judge_runs"][run.name]["verdict"] == "unreliable"
    assert report["manifest"]["judge_runs"][0]["reliability"]["verdict"] == "unreliable"
    rows = {(r["rater"], r["metric"]): r["value"] for r in csv.DictReader(io.StringIO(download("csv")))
            if r["section"] == "judge_run"}
    assert rows[(run.name, "reliability")] == "unreliable" and reason in rows[(run.name, "reliability_reasons")]
    assert float(rows[(run.name, "reliability_option_mass")]) < 0.5
    assert f"Judge run {tex_escape(run.name)}: unreliable" in download("tex")
    assert f"Judge run {run.name}: unreliable" in download("svg")  # Figure 2 carries the note
