"""The pipeline plan on real data: augmentation covers every sample a later stage reads R_G of, and
a plan that would need data no earlier stage writes is refused at launch (review: the demo on PFG
failed after 610 s at PostGRAG's training, its validation samples had no generic response)."""
from dataclasses import replace

import pytest
from django.urls import reverse

from modeling.importers.service import dataset_import
from modeling.llm_services import llm_samples
from modeling.models import Dataset, Sample
from tests.conftest import shared_file
from worker.models import Job
from worker.pipeline import PipelinePlan, PlanError, pipeline_check, pipeline_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def pfg() -> Dataset:
    """40 real Persuasion-for-Good conversations: splits train and valid (no test), as the demo gets."""
    folder = shared_file("pfg/full_dialog.csv").parent
    report = dataset_import(kind="pfg", path=str(folder), limit=40).as_dict()
    dataset = Dataset.objects.get(name=report["dataset"])
    assert set(dataset.samples.values_list("split", flat=True)) == {"train", "valid"}
    return dataset


def demo_plan(dataset: Dataset, **changes) -> PipelinePlan:
    """The plan `manage.py demo --data ../shared/data/pfg` makes: evaluation on valid, as there is no test."""
    return replace(PipelinePlan(dataset=dataset.name, eval_split="valid", train_limit=12, eval_limit=3,
                                judge=False), **changes)


def augment_as_the_stages_do(plan: PipelinePlan) -> None:
    """Write an R_G on exactly the samples each augment stage of ``plan`` would (llm_samples)."""
    dataset = Dataset.objects.get(name=plan.dataset)
    for kind, params in plan.stages():
        if kind == Job.Kind.AUGMENT:
            for sample in llm_samples(dataset=dataset, split=params["split"], limit=params["limit"]):
                Sample.objects.filter(pk=sample.pk).update(generic_response="I see. Tell me more.")


def test_augmentation_covers_postgrag_training_validation_and_evaluation(pfg):
    plan = pipeline_check(demo_plan(pfg))
    assert plan.valid_split == "valid"
    train = next(p for k, p in plan.stages() if k == Job.Kind.TRAIN and p["method"] == "postgrag")
    assert (train["valid_split"], train["valid_limit"]) == ("valid", 16)  # what training reads, said to it
    augment_as_the_stages_do(plan)
    # The samples training and generation read (first N by primary key) all have R_G now:
    for split, limit in (("train", 12), ("valid", 16), ("valid", 3)):
        rows = Sample.objects.filter(dataset=pfg, split=split).order_by("pk")[:limit]
        assert all(s.generic_response for s in rows), (split, limit)
    # ... so the same plan without augmentation passes the pre-flight check.
    pipeline_check(replace(plan, augment=False))


def test_a_plan_whose_postgrag_stages_lack_generic_responses_is_refused_before_any_job(pfg):
    with pytest.raises(PlanError) as caught:
        pipeline_create(plan=demo_plan(pfg, augment=False))
    message = str(caught.value)
    assert "stage 1 (Train postgrag)" not in message  # stage 1 is PreSFT(Hist): it reads no R_G
    assert "(Train postgrag) needs the generic response R_G of the first 12 samples of" in message
    assert f"{pfg.name}/valid" in message and "No job was created" in message
    assert not Job.objects.exists()


def test_a_plan_of_presft_hist_alone_needs_no_generic_responses(pfg):
    """PreSFT(Hist) reads no R_G (paper Sec. 4 baselines), so no augmentation is asked of it."""
    pipeline_check(demo_plan(pfg, augment=False, methods=["presft_hist"], challenger="presft_hist"))


def test_a_taken_study_slug_and_an_unknown_dataset_are_refused(pfg):
    from annotation.models import Study

    Study.objects.create(slug="taken", title="t")
    with pytest.raises(PlanError, match="study 'taken', which already exists"):
        pipeline_check(demo_plan(pfg, study_slug="taken"))
    with pytest.raises(PlanError, match="no dataset 'nope'"):
        pipeline_check(PipelinePlan(dataset="nope"))


def test_two_pipelines_of_one_plan_get_their_own_neutral_study(pfg):
    first, first_stages = pipeline_create(plan=demo_plan(pfg))
    second, second_stages = pipeline_create(plan=demo_plan(pfg))
    slugs = [PipelinePlan(**job.params).slug() for job in (first, second)]
    assert slugs[0] != slugs[1] and all(s.startswith("study-") for s in slugs)
    study_stage = next(c for c in second_stages if c.kind == Job.Kind.STUDY)
    assert study_stage.params["slug"] == slugs[1]


def test_the_launch_form_shows_the_plan_error_and_creates_nothing(pfg, admin_client):
    response = admin_client.post(reverse("worker:job_launch", args=["pipeline"]), {
        "dataset": pfg.name, "methods": ["presft_hist", "postgrag"], "baseline": "presft_hist",
        "challenger": "postgrag", "backbone": "smollm2", "llm": "smollm2", "judge_model": "smollm2",
        "bert_model": "minilm", "train_split": "train", "eval_split": "valid", "train_limit": 12,
        "eval_limit": 3, "valid_limit": 16, "max_steps": 2, "batch_size": 4, "lr": 1e-4, "alpha": 0.5,
        "beta": 0.01, "overlap": 3, "seed": 0,  # augment left unticked
    })
    assert response.status_code == 200, response.status_code
    assert not response.context["form"].errors.keys() - {"__all__"}, response.context["form"].errors
    assert "needs the generic response R_G" in response.content.decode()
    assert not Job.objects.exists()


def test_a_stopped_demo_marks_its_unfinished_jobs_cancelled_and_retry_resumes_them(pfg, settings):
    from worker.management.commands.demo import pipeline_cancel_unfinished
    from worker.services import job_retry

    parent, stages = pipeline_create(plan=demo_plan(pfg))
    Job.objects.filter(pk=parent.pk).update(status=Job.Status.RUNNING)
    Job.objects.filter(pk=stages[0].pk).update(status=Job.Status.SUCCEEDED)
    Job.objects.filter(pk=stages[1].pk).update(status=Job.Status.RUNNING)
    stopped = pipeline_cancel_unfinished(parent)
    assert [job.pk for job in stopped] == [parent.pk] + [s.pk for s in stages[1:]]
    assert Job.objects.get(pk=stages[0].pk).status == Job.Status.SUCCEEDED
    for job in Job.objects.filter(pk__in=[j.pk for j in stopped]):
        assert job.status == Job.Status.CANCELLED and job.finished_at is not None
        assert job.log_tail.endswith("cancelled: the demo that ran it stopped (Retry resumes it)\n")
    settings.CELERY_TASK_ALWAYS_EAGER = False
    retried = job_retry(job=Job.objects.get(pk=stages[1].pk))  # the embedded broker takes it
    assert retried.status == Job.Status.QUEUED and not retried.cancel_requested
