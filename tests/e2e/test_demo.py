"""`python manage.py demo --no-serve`: the whole pipeline on CPU with the offline SmolLM2 model."""
import json
from io import StringIO

import pytest
from django.core.management import call_command

from annotation.models import Rating, Study
from worker.models import Job


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_demo_runs_the_whole_pipeline_and_summarises_what_it_produced():
    out = StringIO()
    call_command("demo", "--no-serve", "--train-limit", "4", "--eval-limit", "2", "--max-steps", "1",
                 stdout=out, stderr=StringIO())
    summary = json.loads(out.getvalue().strip().splitlines()[-1])

    assert summary["samples"] > 0 and summary["generic_responses"] > 0
    assert summary["systems"] == ["demo-postgrag", "demo-presft_hist"]
    assert summary["responses"] == {"demo-postgrag": 2, "demo-presft_hist": 2}
    for name in summary["systems"]:
        assert {"char_f1", "rouge1", "rouge2", "rougeL", "bleu", "bpc", "bert_f1"} <= set(summary["metrics"][name])
    study = Study.objects.get(slug=summary["study"]["slug"])
    assert summary["study"]["items"] == study.items.count() == 2
    assert set(study.annotators.values_list("username", flat=True)) == {"annotator1", "annotator2", "annotator3"}
    # The judge scored the four questions for both items in both orders; SmolLM2 gives the option
    # letters too little probability, so its verdicts abstain and the run is marked unreliable.
    run = study.judge_runs.get()
    assert run.verdicts.count() == 16
    assert summary["judge_ratings"] == Rating.objects.filter(item__study=study, rater_kind="llm").count()
    assert summary["judge_ratings"] + len(set(run.verdicts.filter(abstained=True).values_list("item", "question"))) == 8
    assert summary["judge_runs"][run.name]["verdict"] == "unreliable"
    assert summary["judge_runs"][run.name]["checks"]["option_mass"]["level"] == "unreliable"
    pipeline = Job.objects.get(pk=summary["pipeline_job"])
    assert pipeline.status == Job.Status.SUCCEEDED
    assert set(pipeline.children.values_list("status", flat=True)) == {Job.Status.SUCCEEDED}
    assert pipeline.progress_done == pipeline.children.count()
    assert set(summary["logins"]) == {"admin", "annotator1", "annotator2", "annotator3"}
