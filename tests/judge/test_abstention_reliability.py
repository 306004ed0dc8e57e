"""Abstention and run reliability: the rules of judge.reliability, and what they do to ratings and reports.

The database tests store verdicts as a run leaves them and let the real service (with SmolLM2
loaded, as a run does) turn them into ratings, so the rules are checked on the write path itself.
"""
import pytest

from annotation.aggregation import study_aggregate
from annotation.models import Rating
from judge.models import JudgeRun, JudgeVerdict
from judge.reliability import (
    DEFAULT_MIN_OPTION_MASS,
    run_reliability,
    verdict_abstains,
)
from judge.scoring import option_score
from judge.services import JudgeRunError, judge_run_create, judge_run_execute

from .conftest import study_make

QUESTIONS = ("q1", "q2", "q3", "q4")


# --- the abstention rule -------------------------------------------------------------------


def test_options_holding_almost_no_probability_abstain_instead_of_becoming_a_confident_vote():
    # The case: A, B and S together got 3e-7 of the probability, renormalised to a confident "A".
    score = option_score({"A": 2.5e-7, "B": 3e-8, "S": 2e-8}, min_option_mass=DEFAULT_MIN_OPTION_MASS)
    assert score.abstained and not score.failed
    assert score.option_mass == pytest.approx(3e-7)
    # Kept for audit: the renormalised probabilities and what the choice would have been.
    assert score.probabilities["A"] == pytest.approx(2.5 / 3) and score.choice == "A"


@pytest.mark.parametrize("mass, abstains", [(0.116, True), (0.499, True), (0.5, False), (0.97, False)])
def test_the_default_minimum_stops_smollm2s_option_mass_and_passes_an_instruct_models(mass, abstains):
    # 0.116: SmolLM2-135M's median on SPC prompts (issue 16); 0.97: an instruct model answering with a letter.
    assert DEFAULT_MIN_OPTION_MASS == 0.5
    shares = {"A": 0.5 * mass, "B": 0.25 * mass, "S": 0.25 * mass}  # exact binary fractions: they sum to mass
    assert option_score(shares).abstained is abstains
    assert verdict_abstains(option_mass=mass, min_option_mass=DEFAULT_MIN_OPTION_MASS) is abstains


def test_a_verdict_without_a_measured_mass_is_not_an_abstention_and_a_minimum_of_zero_keeps_everything():
    assert verdict_abstains(option_mass=None, min_option_mass=0.5) is False
    assert verdict_abstains(option_mass=float("nan"), min_option_mass=0.5) is True
    assert option_score({"A": 1e-9, "B": 0.0, "S": 0.0}, min_option_mass=0.0).abstained is False


def test_no_usable_probability_is_a_failure_and_a_missing_option_is_an_error():
    assert option_score({"A": 0.0, "B": 0.0, "S": 0.0}).failed
    with pytest.raises(ValueError, match="exactly the options"):
        option_score({"A": 0.5, "B": 0.5})


# --- the run's reliability verdict ---------------------------------------------------------


def _reliability(**overrides):
    figures = {"verdicts": 100, "failed": 0, "abstained": 0, "pairs": 50, "consistent_pairs": 45,
               "option_mass_median": 0.97, "answers": {"A": 40, "B": 38, "S": 22}, "min_option_mass": 0.5}
    return run_reliability(**{**figures, **overrides})


def test_a_run_that_passes_every_threshold_is_reliable_with_every_figure():
    result = _reliability()
    assert result["verdict"] == "reliable" and result["reasons"] == []
    figures = {name: check["figure"] for name, check in result["checks"].items()}
    assert figures == {"failure_rate": 0.0, "abstention_rate": 0.0, "top_answer_share": 0.4,
                       "position_consistency": 0.9, "option_mass": 0.97}


@pytest.mark.parametrize(
    "overrides, check, verdict, reason",
    [
        ({"consistent_pairs": 30}, "position_consistency", "warnings", "position consistency 0.6 is below 0.7"),
        ({"consistent_pairs": 0}, "position_consistency", "unreliable", "position consistency 0 is below 0.5"),
        ({"option_mass_median": 0.7}, "option_mass", "warnings", "median option mass 0.7 is below 0.8"),
        ({"option_mass_median": 0.116}, "option_mass", "unreliable", "median option mass 0.116 is below 0.5"),
        ({"abstained": 10}, "abstention_rate", "warnings", "abstention rate 0.1 is above 0.05"),
        ({"abstained": 30}, "abstention_rate", "unreliable", "abstention rate 0.3 is above 0.2"),
        ({"answers": {"A": 85, "B": 10, "S": 5}}, "top_answer_share", "warnings",
         "share of the most frequent answer 0.85 is above 0.8"),
        ({"answers": {"A": 96, "B": 4, "S": 0}}, "top_answer_share", "unreliable",
         "share of the most frequent answer 0.96 is above 0.95 (96 of 100 verdicts answered A)"),
        ({"failed": 5, "verdicts": 95, "answers": {"A": 38, "B": 37, "S": 20}}, "failure_rate", "warnings",
         "failure rate 0.05 is above 0"),
    ],
)
def test_each_threshold_gives_its_level_with_its_figure_and_reason(overrides, check, verdict, reason):
    result = _reliability(**overrides)
    assert result["verdict"] == verdict
    assert result["checks"][check]["level"] == verdict
    assert any(r.startswith(reason) for r in result["reasons"]), result["reasons"]
    assert reason.startswith(result["checks"][check]["label"])


def test_a_run_without_any_scored_verdict_is_unreliable():
    assert run_reliability(verdicts=0, failed=0, abstained=0, pairs=0, consistent_pairs=0, option_mass_median=None,
                           answers={}, min_option_mass=0.5)["verdict"] == "unreliable"
    all_failed = run_reliability(verdicts=0, failed=8, abstained=0, pairs=0, consistent_pairs=0,
                                 option_mass_median=None, answers={}, min_option_mass=0.5)
    assert all_failed["verdict"] == "unreliable" and "every prompt failed" in all_failed["reasons"]
    with pytest.raises(ValueError, match="inconsistent"):
        _reliability(abstained=101)


# --- on the write path: abstentions, flipped verdicts, the study's threshold ----------------


def _store(run, item, question, side, probabilities, *, mass=None, abstained=False):
    JudgeVerdict.objects.create(run=run, item=item, question=question, baseline_side=side, probabilities=probabilities,
                                option_mass=mass, abstained=abstained)


@pytest.mark.slow
@pytest.mark.django_db
def test_an_abstention_is_kept_with_its_probabilities_never_a_rating_and_counted_per_question(smollm2, spc_pairs):
    study = study_make(spc_pairs[:2], slug="abstain")
    run = judge_run_create(study=study, model_id="smollm2", name="LLM-abstain")
    assert run.min_option_mass == DEFAULT_MIN_OPTION_MASS
    first, second = study.items.order_by("pk")
    confident = {"A": 0.1, "B": 0.85, "S": 0.05}
    for item in (first, second):
        for q in QUESTIONS:
            for side in "AB":
                probabilities = confident if side == "A" else {"A": 0.85, "B": 0.1, "S": 0.05}
                # q1 of the first item: the baseline-on-B order held only 11.6 % on the options.
                low = item == first and q == "q1" and side == "B"
                _store(run, item, q, side, probabilities, mass=0.116 if low else 0.97, abstained=low)
    summary = judge_run_execute(run=run)

    assert summary["computed"] == 0
    assert not Rating.objects.filter(rater=run.name, item=first, question="q1").exists()
    assert Rating.objects.filter(rater=run.name, is_current=True).count() == 7
    kept = JudgeVerdict.objects.get(run=run, item=first, question="q1", baseline_side="B")
    assert kept.abstained and kept.option_mass == pytest.approx(0.116) and kept.probabilities["A"] == 0.85
    assert summary["abstained"] == 1 and summary["abstentions"] == {"q1": 1, "q2": 0, "q3": 0, "q4": 0}
    assert summary["option_mass"]["q1"] == pytest.approx(0.97) and summary["option_mass_median"] == pytest.approx(0.97)
    run.refresh_from_db()
    assert run.reliability == summary["reliability"]
    # One abstention in 16 verdicts: 6 % is above the 5 % warning line.
    assert run.reliability["verdict"] == "warnings"
    assert run.reliability["checks"]["abstention_rate"]["figure"] == pytest.approx(1 / 16, abs=1e-4)
    assert "abstention rate 0.0625 is above 0.05 (1 of 16 verdicts)" in run.reliability["reasons"]


@pytest.mark.slow
@pytest.mark.django_db
def test_a_flipped_verdict_keeps_the_judges_confidence_and_counts_whatever_the_threshold_becomes(smollm2, spc_pairs):
    study = study_make(spc_pairs[:2], slug="flips", min_confidence=2)
    run = judge_run_create(study=study, model_id="smollm2", name="LLM-flips", min_option_mass=0.0)
    flip_item, steady_item = study.items.order_by("pk")
    for q in QUESTIONS:
        # Position-following, unsure: "A" at 0.5 in both orders (confidence 2 in each).
        for side in "AB":
            _store(run, flip_item, q, side, {"A": 0.5, "B": 0.3, "S": 0.2}, mass=0.9)
        # Consistent but unsure: the challenger at 0.5 in both orders (confidence 2).
        _store(run, steady_item, q, "A", {"A": 0.3, "B": 0.5, "S": 0.2}, mass=0.9)
        _store(run, steady_item, q, "B", {"A": 0.5, "B": 0.3, "S": 0.2}, mass=0.9)
    judge_run_execute(run=run)
    flipped = Rating.objects.get(rater=run.name, item=flip_item, question="q1", is_current=True)
    assert (flipped.choice, flipped.confidence, flipped.meta["flipped"]) == ("similar", 2, True)
    assert flipped.meta["order_confidences"] == {"A": 2, "B": 2}

    def llm_labels():
        votes = study_aggregate(study=study).llm[run.name]
        return {(q, i): (row.label, row.status) for (q, i), row in votes.iterrows()}

    before = llm_labels()
    assert before[("q1", flip_item.pk)] == ("similar", "valid")
    # The study's threshold is raised after the run: the flipped votes still count, unchanged;
    # the judge's ordinary unsure votes are filtered like anyone's.
    study.min_confidence = 5
    study.save(update_fields=["min_confidence"])
    after = llm_labels()
    for q in QUESTIONS:
        assert after[(q, flip_item.pk)] == before[(q, flip_item.pk)] == ("similar", "valid")
        assert after[(q, steady_item.pk)] == (None, "confidence")
    # Executing the run again under the new threshold rewrites nothing.
    rows = list(Rating.objects.filter(rater=run.name).values_list("pk", "confidence"))
    judge_run_execute(run=run)
    assert list(Rating.objects.filter(rater=run.name).values_list("pk", "confidence")) == rows


@pytest.mark.django_db
def test_a_resumed_run_keeps_its_minimum_and_a_bad_minimum_is_refused(spc_pairs):
    study = study_make(spc_pairs[:1], slug="min-mass")
    run = judge_run_create(study=study, model_id="smollm2", name="LLM-min", min_option_mass=0.3)
    assert judge_run_create(study=study, model_id="smollm2", name="LLM-min") == run
    assert JudgeRun.objects.get(pk=run.pk).min_option_mass == 0.3
    with pytest.raises(JudgeRunError, match="abstains below an option mass of 0.3, not 0.5"):
        judge_run_create(study=study, model_id="smollm2", name="LLM-min", min_option_mass=0.5)
    with pytest.raises(JudgeRunError, match="from 0 to 1"):
        judge_run_create(study=study, model_id="smollm2", name="LLM-other", min_option_mass=1.5)


@pytest.mark.django_db
def test_an_llm_rater_that_is_not_reliable_is_named_so_in_every_table_and_in_figure_2(spc_pairs):
    from reports.build import report_build
    from reports.render import report_render

    study = study_make(spc_pairs[:1], slug="report-reliability", min_confidence=1)
    item = study.items.get()
    for rater, kind in (("ann1", "human"), ("ann2", "human"), ("LLM-warn", "llm")):
        Rating.objects.create(item=item, question="q1", rater=rater, rater_kind=kind, choice="challenger",
                              shown_choice="B", baseline_side="A", confidence=4)
    reliability = _reliability(consistent_pairs=30)  # position consistency 0.6: warnings
    JudgeRun.objects.create(name="LLM-warn", study=study, model_id="smollm2", prompt_version="v2",
                            status=JudgeRun.Status.SUCCEEDED, reliability=reliability)
    report = report_build(study=study)
    assert report["judge_runs"]["LLM-warn"]["verdict"] == "warnings"
    html = report_render(report=report, fmt="html")
    assert "<td>LLM-warn (warnings)</td>" in html and "position consistency 0.6 is below 0.7" in html
    assert "LLM-warn (warnings)" in report_render(report=report, fmt="tex")
    svg = report_render(report=report, fmt="svg")
    assert "LLM-warn (warnings)" in svg and "Judge run LLM-warn: warnings (position consistency 0.6" in svg
    csv_text = report_render(report=report, fmt="csv")
    assert "judge_run,,LLM-warn,reliability,warnings" in csv_text
    assert "judge_run,,LLM-warn,reliability_position_consistency,0.6" in csv_text
