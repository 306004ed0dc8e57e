"""Judge runs with the real offline SmolLM2 on real SPC test conversations (loaded once per module)."""
import json

import pytest
from django.core.management import call_command

from annotation.models import Item, Rating
from judge.models import JudgeRun, JudgeVerdict
from judge.prompts import PROMPT_V1, PROMPT_V2
from judge.scoring import canonical_probabilities, encode_messages, pair_verdict, score_prompt_groups
from judge.services import judge_item_prompts, judge_run_create, judge_run_execute
from modeling.progress import Cancelled

from .conftest import study_make

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def _ratings(run):
    return Rating.objects.filter(rater=run.name, is_current=True)


def test_a_run_judges_every_item_and_question_in_both_orders_and_writes_llm_ratings(smollm2, spc_pairs):
    study = study_make(spc_pairs[:2])
    run = judge_run_create(study=study, model_id="smollm2", name="LLM-2", min_option_mass=0.0)
    calls = []
    summary = judge_run_execute(run=run, progress=lambda done, total: calls.append((done, total)))

    run.refresh_from_db()
    assert run.status == JudgeRun.Status.SUCCEEDED and run.finished_at
    assert run.prompt_version == "v2" and PROMPT_V2.system in run.prompt_text
    assert calls[0] == (0, 16) and calls[-1] == (16, 16)
    verdicts = list(JudgeVerdict.objects.filter(run=run))
    assert len(verdicts) == 2 * 4 * 2 and not any(v.failed for v in verdicts)
    for v in verdicts:
        assert set(v.probabilities) == {"A", "B", "S"}
        assert sum(v.probabilities.values()) == pytest.approx(1.0)
        # The shared context was encoded once and reused: most of each prompt came from the cache.
        assert 0 < v.raw["cached_prefix_tokens"] < v.raw["n_tokens"]
        assert 0 < v.raw["option_mass"] <= 1

    ratings = list(_ratings(run))
    assert len(ratings) == 8 and {r.rater_kind for r in ratings} == {Rating.RaterKind.LLM}
    by_pair = {(v.item_id, v.question, v.baseline_side): v.probabilities for v in verdicts}
    for r in ratings:
        expected = pair_verdict(baseline_as_a=by_pair[(r.item_id, r.question, "A")],
                                baseline_as_b=by_pair[(r.item_id, r.question, "B")])
        assert (r.choice, r.confidence, r.meta["flipped"]) == (expected.choice, expected.confidence, expected.flipped)
        assert 1 <= r.confidence <= 5
        if r.meta["flipped"]:
            assert r.choice == "similar"
    for q in ("q1", "q2", "q3", "q4"):
        flags = [r.meta["flipped"] for r in ratings if r.question == q]
        assert summary["consistency"][q] == pytest.approx(1 - sum(flags) / len(flags), abs=1e-4)
    assert summary["items"] == 2 and summary["ratings"] == 8 and summary["failed"] == 0

    # Running again recomputes nothing and duplicates nothing.
    rows = Rating.objects.count()
    again = judge_run_execute(run=run)
    assert again["computed"] == 0 and again["ratings"] == 8 and Rating.objects.count() == rows


def test_prompts_carry_no_system_names(smollm2, spc_pairs):
    study = study_make(spc_pairs[:2])
    for item in study.items.all():
        for _, _, messages in judge_item_prompts(item=item, questions=study.questions.all(), template=PROMPT_V1):
            text = json.dumps(messages)
            assert "SECRET" not in text and "PreSFT" not in text and "PostGRAG" not in text


@pytest.mark.parametrize("template", [PROMPT_V1, PROMPT_V2], ids=lambda t: t.version)
def test_prefix_cache_matches_full_prompts_and_swapped_input_scores_as_the_other_order(smollm2, spc_pairs, template):
    model, tokenizer = smollm2
    # Three items: the later ones start from the template prefix the model keeps between items.
    study = study_make(spc_pairs[:3])
    questions = list(study.questions.all())
    items = list(study.items.order_by("pk"))
    groups = [[encode_messages(tokenizer, m) for _, _, m in judge_item_prompts(item=i, questions=questions,
                                                                               template=template)] for i in items]
    cached = score_prompt_groups(model, tokenizer, groups, prefix_cache=True)
    cached_again = score_prompt_groups(model, tokenizer, groups[::-1], prefix_cache=True)[::-1]
    full = score_prompt_groups(model, tokenizer, groups, prefix_cache=False)
    for group_cached, group_again, group_full in zip(cached, cached_again, full):
        for a, again, b in zip(group_cached, group_again, group_full):
            assert a.cached_prefix_tokens > 0 and b.cached_prefix_tokens == 0
            for option in "ABS":
                assert a.probabilities[option] == pytest.approx(b.probabilities[option], abs=1e-4)
                assert again.probabilities[option] == pytest.approx(b.probabilities[option], abs=1e-4)

    # The same item with its responses swapped in the input: its "baseline on A" prompts are the
    # original's "baseline on B" prompts token for token, so the model's raw A/B probabilities are
    # those of the other order, and canonicalisation hands them to the right system.
    item = items[0]
    swapped = Item(persona=item.persona, history=item.history, generic_response=item.generic_response,
                   baseline_response=item.challenger_response, challenger_response=item.baseline_response)
    original = judge_item_prompts(item=item, questions=questions, template=template)
    mirrored = judge_item_prompts(item=swapped, questions=questions, template=template)
    pairs = [(i, j) for i, (q, side, _) in enumerate(original) if side == "B"
             for j, (q2, side2, _) in enumerate(mirrored) if side2 == "A" and q2 == q]
    assert len(pairs) == 4
    swapped_scores = score_prompt_groups(model, tokenizer, [[encode_messages(tokenizer, mirrored[j][2]) for _, j in pairs]])[0]
    for (i, j), score in zip(pairs, swapped_scores):
        assert groups[0][i] == encode_messages(tokenizer, mirrored[j][2])
        for option in "ABS":
            assert score.probabilities[option] == pytest.approx(cached[0][i].probabilities[option], abs=1e-4)
        as_original = canonical_probabilities(cached[0][i].probabilities, baseline_side="B")
        as_swapped = canonical_probabilities(score.probabilities, baseline_side="A")
        assert as_swapped["baseline"] == pytest.approx(as_original["challenger"], abs=1e-4)
        assert as_swapped["challenger"] == pytest.approx(as_original["baseline"], abs=1e-4)


def test_a_cancelled_run_resumes_where_it_stopped_without_recomputing(smollm2, spc_pairs):
    study = study_make(spc_pairs[:2])
    run = judge_run_create(study=study, model_id="smollm2", name="LLM-resume", settings={"items_per_batch": 1},
                           min_option_mass=0.0)

    def stop_after_first_batch(done, total):
        if done > 0:
            raise Cancelled("stopped by the test")

    with pytest.raises(Cancelled):
        judge_run_execute(run=run, progress=stop_after_first_batch)
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.CANCELLED
    kept = {v.pk: (v.created_at, v.probabilities) for v in JudgeVerdict.objects.filter(run=run)}
    assert len(kept) == 8 and _ratings(run).count() == 4  # the first item, committed before the stop

    summary = judge_run_execute(run=run)
    assert summary["computed"] == 8  # only the item left
    after = {v.pk: (v.created_at, v.probabilities) for v in JudgeVerdict.objects.filter(run=run)}
    assert len(after) == 16 and all(after[pk] == kept[pk] for pk in kept)
    assert _ratings(run).count() == 8 and Rating.objects.filter(rater=run.name).count() == 8
    run.refresh_from_db()
    assert run.status == JudgeRun.Status.SUCCEEDED


def test_verdicts_that_follow_the_position_become_flagged_similar_votes(smollm2, spc_pairs):
    study = study_make(spc_pairs[:1], min_confidence=3)
    run = judge_run_create(study=study, model_id="smollm2", name="LLM-biased")
    item = study.items.get()
    # Stored verdicts of a judge that always prefers Response A (as a killed run leaves them).
    for q in ("q1", "q2", "q3", "q4"):
        for side in "AB":
            JudgeVerdict.objects.create(run=run, item=item, question=q, baseline_side=side,
                                        probabilities={"A": 0.9, "B": 0.06, "S": 0.04})
    summary = judge_run_execute(run=run)
    assert summary["computed"] == 0
    ratings = list(_ratings(run))
    assert len(ratings) == 4
    # The judge's own confidence (0.9 in each order: 5), whatever the study's min_confidence (3).
    assert all(r.choice == "similar" and r.meta["flipped"] and r.confidence == 5 for r in ratings)
    assert all(r.meta["orders"] == {"A": "baseline", "B": "challenger"} for r in ratings)
    assert summary["consistency"] == {"q1": 0.0, "q2": 0.0, "q3": 0.0, "q4": 0.0}
    assert summary["position_bias"]["q1"] == pytest.approx(0.84)


def test_a_prompt_longer_than_the_context_is_a_recorded_failure_never_a_vote(smollm2, spc_pairs):
    long = dict(spc_pairs[0], key="too-long", history=[{"role": "user", "text": "tell me more " * 3000}])
    study = study_make([long])
    run = judge_run_create(study=study, model_id="smollm2", name="LLM-long")
    summary = judge_run_execute(run=run)
    bad = study.items.get(key="too-long")
    failed = JudgeVerdict.objects.filter(run=run, item=bad)
    assert failed.count() == 8 and all(v.failed and "more than the model's context" in v.error for v in failed)
    assert not _ratings(run).filter(item=bad).exists()
    assert summary["failed"] == 8 and summary["ratings"] == 0 and summary["consistency"] == {}
    assert "more than the model's context" in summary["failures"][0]["error"]


def test_run_judge_prints_a_json_summary_and_resumes_by_name(smollm2, spc_pairs, capsys):
    study = study_make(spc_pairs[:1], slug="cmd-study")
    call_command("run_judge", "cmd-study", "--model", "smollm2", "--name", "LLM-cmd", "--min-option-mass", "0")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out) == {"run", "items", "ratings", "consistency", "abstained", "reliability", "seconds"}
    assert out["run"] == "LLM-cmd" and out["items"] == 1 and out["ratings"] == 4
    assert set(out["consistency"]) == {"q1", "q2", "q3", "q4"}
    call_command("run_judge", "cmd-study", "--model", "smollm2", "--name", "LLM-cmd")
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["items"] == 1 and out["ratings"] == 4  # resumed: nothing recomputed, nothing duplicated
    assert Rating.objects.filter(rater="LLM-cmd").count() == 4
    assert JudgeRun.objects.filter(study=study).count() == 1


def test_a_runs_ratings_appear_in_the_agreement_report_as_an_llm_rater(smollm2, spc_pairs):
    from reports.build import report_build

    study = study_make(spc_pairs[:1], slug="report-study", min_confidence=1)
    item = study.items.get()
    for rater in ("ann1", "ann2", "ann3"):
        for q in ("q1", "q2", "q3", "q4"):
            Rating.objects.create(item=item, question=q, rater=rater, rater_kind=Rating.RaterKind.HUMAN,
                                  choice="challenger", shown_choice="B", baseline_side="A", confidence=4)
    run = judge_run_create(study=study, model_id="smollm2", name="LLM-145", min_option_mass=0.0)
    judge_run_execute(run=run)

    report = report_build(study=study)
    judged = {r.question: r.choice for r in _ratings(run)}
    for q in ("q1", "q2", "q3", "q4"):
        llm = report["questions"][q]["llm"]
        assert list(llm) == ["LLM-145"]  # the judge, beside (not among) the human annotators
        assert llm["LLM-145"]["compared"] == 1
        assert llm["LLM-145"]["agreement_vs_human"] == (1.0 if judged[q] == "challenger" else 0.0)
    assert "LLM-145" not in {row["rater"] for row in report["annotators"]}


def test_the_launch_forms_judge_job_resumes_the_run_of_that_name(smollm2, spc_pairs):
    from worker.models import Job
    from worker.tasks.judge import judge

    study = study_make(spc_pairs[:1], slug="form-study")
    run = judge_run_create(study=study, model_id="smollm2", name="LLM-form")
    item = study.items.get()
    for q in ("q1", "q2", "q3", "q4"):  # a run stopped after scoring everything
        JudgeVerdict.objects.create(run=run, item=item, question=q, baseline_side="A",
                                    probabilities={"A": 0.1, "B": 0.12, "S": 0.78})
        JudgeVerdict.objects.create(run=run, item=item, question=q, baseline_side="B",
                                    probabilities={"A": 0.13, "B": 0.05, "S": 0.82})
    # The params the admin's launch form and the pipeline send (worker.forms.JudgeForm).
    job = Job.objects.create(kind=Job.Kind.JUDGE, params={"study": "form-study", "model": "smollm2",
                                                          "name": "LLM-form", "limit": None})
    judge(job.pk)  # the task body, in this process
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.result["computed"] == 0 and job.result["ratings"] == 4
    assert job.result["consistency"] == {"q1": 1.0, "q2": 1.0, "q3": 1.0, "q4": 1.0}
    ratings = list(_ratings(run))
    assert [r.choice for r in ratings] == ["similar"] * 4 and not any(r.meta["flipped"] for r in ratings)
    assert {r.confidence for r in ratings} == {4}  # mean P(similar) 0.8
    assert JudgeRun.objects.count() == 1


def test_run_judge_on_two_systems_stored_responses_builds_a_judge_only_study_once(smollm2, spc_pairs, capsys):
    from django.core.management.base import CommandError

    from annotation.models import Study
    from tests.factories import samples_create, systems_with_responses

    pairs = spc_pairs[:4]
    samples = samples_create([dict(key=f"spc/test/c1/{i}", agent_persona=pair["persona"], history=pair["history"],
                                   reference="r", generic_response=pair["generic_response"])
                              for i, pair in enumerate(pairs)])
    base, chal = systems_with_responses(
        samples, [(pair["baseline_response"], pair["challenger_response"]) for pair in pairs],
        baseline=dict(name="PreSFT(Hist)", method="presft_hist"), challenger=dict(name="PostGRAG", method="postgrag"))

    args = ("run_judge", "spc-judge", "--model", "smollm2", "--systems", "PreSFT(Hist)", "PostGRAG", "--limit", "2",
            "--name", "LLM-2", "--min-option-mass", "0")
    call_command(*args)
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    study = Study.objects.get(slug="spc-judge")
    assert study.items.count() == 2 and not study.is_open and not study.annotators.exists()
    assert (study.baseline_system, study.challenger_system) == (base, chal)
    assert out["items"] == 2 and out["ratings"] == 8
    call_command(*args)  # the same study again: resumed, nothing recomputed or duplicated
    assert Study.objects.filter(slug="spc-judge").count() == 1 and Rating.objects.filter(rater="LLM-2").count() == 8
    with pytest.raises(CommandError, match="compares 'PreSFT\\(Hist\\)' with 'PostGRAG'"):
        call_command("run_judge", "spc-judge", "--model", "smollm2", "--systems", "PostGRAG", "PreSFT(Hist)")
    with pytest.raises(CommandError, match="No system named 'nope'"):
        call_command("run_judge", "other", "--model", "smollm2", "--systems", "nope", "PostGRAG")


def test_a_run_resumed_by_name_keeps_its_prompt_version_unless_another_is_asked_for(smollm2, spc_pairs):
    from judge.services import JudgeRunError

    study = study_make(spc_pairs[:1], slug="old-run")
    old = judge_run_create(study=study, model_id="smollm2", name="LLM-old", prompt_version="v1")
    assert judge_run_create(study=study, model_id="smollm2", name="LLM-old") == old  # resumes as v1
    assert judge_run_create(study=study, model_id="smollm2", name="LLM-new").prompt_version == "v2"  # the default
    with pytest.raises(JudgeRunError, match="prompt 'v1'"):
        judge_run_create(study=study, model_id="smollm2", name="LLM-old", prompt_version="v2")
