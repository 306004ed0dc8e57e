"""Agreement reports (issue 5) against values computed independently of the code under test.

Textbook values: Fleiss (1971) as in Wikipedia's 10 subjects x 14 raters table (kappa 0.210),
Krippendorff (2011) nominal example with missing data (alpha 0.743), Wikipedia's Cohen's kappa
example (0.4). The small study's kappa, alphas and agreements are worked by hand in comments.
"""
import csv
import io
import json
from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Assignment, Item, Rating
from judge.models import JudgeRun
from reports import report_build, report_render
from reports.stats import cohen_kappa, fleiss_kappa, krippendorff_alpha, win_rate
from tests.annotation.test_aggregation import B, C, S
from tests.factories import ratings_create, study_create

nan = np.nan


def test_fleiss_1971_textbook_example():
    # Wikipedia "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories.
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert round(fleiss_kappa(counts=np.array(table)), 3) == 0.210


def test_krippendorff_nominal_example_with_missing_data():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability", example C: 4 observers, 12 units.
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]
    assert round(krippendorff_alpha(reliability_data=data, level="nominal"), 3) == 0.743


def test_statistics_are_none_where_undefined():
    assert fleiss_kappa(counts=np.array([[3, 0, 0], [3, 0, 0]])) is None  # every rating the same
    assert krippendorff_alpha(reliability_data=[[1, 1], [1, 1]], level="nominal") is None
    assert cohen_kappa(confusion=np.zeros((3, 3))) is None
    assert win_rate(wins=0, losses=0, seed=0)["challenger"] is None


def test_win_rate_sign_test_and_seeded_bootstrap():
    result = win_rate(wins=8, losses=2, seed=7)
    assert result["challenger"] == 0.8 and result["decisive"] == 10
    # Two-sided sign test by hand: 2 * P(X <= 2 | n=10, p=1/2) = 2 * (1 + 10 + 45) / 1024.
    assert result["sign_test_p"] == pytest.approx(112 / 1024)
    low, high = result["ci95"]
    assert 0.3 <= low < 0.8 < high <= 1.0
    assert win_rate(wins=8, losses=2, seed=7)["ci95"] == result["ci95"]  # seeded: the same interval every time


def small_study():
    """Five items rated on q1 (confidence 5 unless said), worked by hand in the tests below."""
    study = study_create("small", overlap=3, min_confidence=2, seed=3)
    ratings_create(study, [
        ("i1", "ann", "q1", B, 5), ("i1", "bob", "q1", B, 5), ("i1", "cat", "q1", B, 5),
        ("i2", "ann", "q1", B, 5), ("i2", "bob", "q1", B, 5), ("i2", "cat", "q1", C, 5),
        ("i3", "ann", "q1", C, 5), ("i3", "bob", "q1", C, 5), ("i3", "cat", "q1", S, 5),
        ("i4", "ann", "q1", S, 5), ("i4", "bob", "q1", S, 5), ("i4", "cat", "q1", S, 5),
        ("i5", "ann", "q1", B, 5), ("i5", "bob", "q1", C, 5),  # only two ratings so far
        ("i1", "LLM-145", "q1", B, 5, Rating.RaterKind.LLM), ("i2", "LLM-145", "q1", C, 5, Rating.RaterKind.LLM),
        ("i3", "LLM-145", "q1", C, 5, Rating.RaterKind.LLM), ("i4", "LLM-145", "q1", B, 1, Rating.RaterKind.LLM),
    ])
    JudgeRun.objects.create(name="LLM-145", study=study, model_id="smollm2", prompt_version="judge-v1",
                            prompt_text="Which response is better?", settings={"seed": 11})
    return study


@pytest.mark.django_db
def test_small_study_report_has_the_issue_shape_and_hand_worked_values():
    study = small_study()
    report = report_build(study=study)
    assert report["study"] == "small" and report["min_confidence"] == 2
    assert list(report["questions"]) == ["q1", "q2", "q3", "q4"]
    q1 = report["questions"]["q1"]
    for key in ("items", "valid", "distribution", "fleiss_kappa", "krippendorff_alpha", "krippendorff_alpha_ordinal",
                "percent_agreement", "win_rate", "llm", "dropped_confidence", "dropped_no_majority"):
        assert key in q1
    assert set(q1["win_rate"]) >= {"challenger", "ci95", "sign_test_p"}
    # Majorities: i1 B, i2 B, i3 C, i4 S, i5 none (two ratings that disagree).
    assert (q1["items"], q1["valid"], q1["dropped_no_majority"], q1["dropped_confidence"]) == (5, 4, 1, 0)
    assert q1["distribution"] == {B: 2, C: 1, S: 1}
    # Fleiss over the 4 items with exactly 3 ratings: P-bar = (1 + 1/3 + 1/3 + 1) / 4 = 2/3;
    # p = (5, 3, 4) / 12, P_e = 50/144; kappa = (2/3 - 25/72) / (1 - 25/72) = 23/47.
    assert q1["fleiss_items"] == 4
    assert q1["fleiss_kappa"] == pytest.approx(23 / 47)
    # Percent agreement over the 5 items with 2+ ratings: (1 + 1/3 + 1/3 + 1 + 0) / 5.
    assert q1["percent_agreement"] == pytest.approx(8 / 15)
    # Krippendorff, coincidences: o_BB 4, o_BC = o_CB 2, o_CC 1, o_CS = o_SC 1, o_SS 3; n = (6, 4, 4), 14 values.
    # Nominal: 1 - (6/14) / ((196 - 68) / 182) = 25/64.
    assert q1["krippendorff_alpha"] == pytest.approx(25 / 64)
    # Ordinal (B < S < C): delta BS 25, SC 16, BC 81; 1 - (356/14) / (5600/182).
    assert q1["krippendorff_alpha_ordinal"] == pytest.approx(1 - (356 / 14) / (5600 / 182))
    # Win rate over decisive labels: 1 challenger vs 2 baseline; sign test 2 * P(X <= 1 | 3) = 1.
    assert q1["win_rate"]["challenger"] == pytest.approx(1 / 3) and q1["win_rate"]["sign_test_p"] == pytest.approx(1.0)
    # The LLM rater: i4's rating is below the minimum; on i1-i3 it says B, C, C vs human B, B, C.
    llm = q1["llm"]["LLM-145"]
    assert (llm["valid"], llm["dropped_confidence"], llm["compared"]) == (3, 1, 3)
    assert llm["distribution"] == {B: 1, C: 2, S: 0}
    assert llm["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]  # rows human, columns LLM: B, C, S
    assert llm["agreement_vs_human"] == pytest.approx(2 / 3)
    # Cohen by hand: po = 2/3; pe = (2/3)(1/3) + (1/3)(2/3) = 4/9; kappa = (2/3 - 4/9) / (5/9) = 2/5.
    assert llm["cohen_kappa_vs_human"] == pytest.approx(0.4)
    # q2 has no ratings: numbers are zero or null, never NaN.
    q2 = report["questions"]["q2"]
    assert q2["items"] == 0 and q2["fleiss_kappa"] is None and q2["win_rate"]["challenger"] is None
    assert "NaN" not in json.dumps(report, default=str)
    manifest = report["manifest"]
    assert manifest["items"]["count"] == 5 and manifest["items"]["keys"] == ["i1", "i2", "i3", "i4", "i5"]
    assert manifest["judge_runs"][0]["prompt_version"] == "judge-v1" and manifest["seeds"]["judge"] == {"LLM-145": 11}
    assert manifest["seeds"]["study"] == 3
    assert [q["key"] for q in manifest["questions"]] == ["q1", "q2", "q3", "q4"]
    assert manifest["questions"][0]["text"].startswith("Which response makes more sense")
    assert sum(manifest["ab_mapping"]["baseline_side_counts"].values()) == 14  # one side per (item, annotator)


@pytest.mark.django_db
def test_cohen_kappa_of_an_llm_rater_matches_the_textbook_example():
    # Wikipedia "Cohen's kappa": 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> kappa 0.4, agreement 0.7.
    study = study_create("cohen")
    plan = [(B, B)] * 20 + [(B, C)] * 5 + [(C, B)] * 10 + [(C, C)] * 15
    rows = []
    for n, (human, llm) in enumerate(plan):
        rows += [(f"i{n}", rater, "q3", human, 4) for rater in ("ann", "bob", "cat")]
        rows.append((f"i{n}", "LLM-2000", "q3", llm, 4, Rating.RaterKind.LLM))
    ratings_create(study, rows)
    llm = report_build(study=study)["questions"]["q3"]["llm"]["LLM-2000"]
    assert llm["compared"] == 50
    assert llm["confusion"] == [[20, 5, 0], [10, 15, 0], [0, 0, 0]]
    assert llm["cohen_kappa_vs_human"] == pytest.approx(0.4)
    assert llm["agreement_vs_human"] == pytest.approx(0.7)


@pytest.mark.django_db
def test_annotator_quality_leave_one_out_speed_and_flags():
    study = small_study()
    ann = User.objects.create_user("ann")
    now = timezone.now()
    for key, seconds in (("i1", 2.0), ("i2", 4.0), ("i3", 30.0)):  # median 4 s < the study's 5 s threshold
        Assignment.objects.create(item=Item.objects.get(study=study, key=key), annotator=ann, baseline_side="A",
                                  status=Assignment.Status.COMPLETED, reserved_at=now, expires_at=now + timedelta(minutes=30),
                                  completed_at=now, seconds=seconds)
    rows = {row["rater"]: row for row in report_build(study=study)["annotators"]}
    assert sorted(rows) == ["ann", "bob", "cat"]  # LLM raters are not annotators
    # Leave-one-out majorities: ann and bob agree on i1 and i4 (the others are split or alone);
    # cat agrees on i1 and i4 but not on i2 (others B, B) or i3 (others C, C).
    assert (rows["ann"]["agreement_loo"], rows["ann"]["compared"]) == (1.0, 2)
    assert (rows["cat"]["agreement_loo"], rows["cat"]["compared"]) == (0.5, 4)
    assert (rows["ann"]["ratings"], rows["cat"]["ratings"]) == (5, 4)
    assert rows["ann"]["mean_confidence"] == 5.0
    assert rows["ann"]["median_seconds"] == 4.0 and "too_fast" in rows["ann"]["flags"]
    assert rows["bob"]["median_seconds"] is None and rows["bob"]["flags"] == []


@pytest.mark.django_db
def test_confidence_threshold_changes_labels_and_is_recorded():
    study = small_study()
    Rating.objects.filter(item__key="i4", rater="ann").update(confidence=1)
    strict = report_build(study=study, min_confidence=2)["questions"]["q1"]
    # i4: ann's similar is dropped, bob and cat still make a similar majority.
    assert strict["valid"] == 4
    Rating.objects.filter(item__key="i4", rater="bob").update(confidence=1)
    strict = report_build(study=study, min_confidence=2)["questions"]["q1"]
    assert (strict["valid"], strict["dropped_confidence"]) == (3, 1)
    loose = report_build(study=study, min_confidence=1)
    assert loose["min_confidence"] == 1 and loose["questions"]["q1"]["valid"] == 4
    assert loose["manifest"]["study"]["min_confidence_used"] == 1


@pytest.mark.django_db
def test_renderers_carry_the_numbers_and_the_manifest():
    study = small_study()
    report = report_build(study=study)
    rows = list(csv.DictReader(io.StringIO(report_render(report=report, fmt="csv"))))
    value = {(r["section"], r["question"], r["rater"], r["metric"]): r["value"] for r in rows}
    assert float(value[("question", "q1", "Human", "fleiss_kappa")]) == pytest.approx(23 / 47)
    assert value[("llm", "q1", "LLM-145", "confusion_human_baseline_llm_challenger")] == "1"
    assert json.loads(value[("manifest", "", "", "items")])["count"] == 5
    html = report_render(report=report, fmt="html")
    assert html.startswith("<!doctype html>") and "<svg" in html and "LLM-145" in html and "Human" in html
    assert "judge-v1" in html  # the manifest travels with the page
    tex = report_render(report=report, fmt="tex")
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "LLM-145" in tex
    assert "% manifest judge_runs" in tex and "0.489" in tex  # Fleiss 23/47
    svg = report_render(report=report, fmt="svg")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "judge-v1" in svg
    png = report_render(report=report, fmt="png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"judge-v1" in png


@pytest.mark.django_db
def test_agreement_report_command(tmp_path, capsys):
    study = small_study()
    call_command("agreement_report", "small", "--format", "json", "--min-confidence", "2")
    printed = json.loads(capsys.readouterr().out)
    assert printed["questions"]["q1"]["valid"] == 4 and printed["min_confidence"] == 2
    target = tmp_path / "report.tex"
    call_command("agreement_report", study.slug, "--format", "tex", "--output", str(target))
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    result = json.loads(line)
    assert result["output"] == str(target) and result["valid"]["q1"] == 4
    assert "\\begin{tabular}" in target.read_text()
    with pytest.raises(CommandError, match="No study with slug 'nope'"):
        call_command("agreement_report", "nope")
    with pytest.raises(CommandError, match="min-confidence.*1 to 5"):
        call_command("agreement_report", "small", "--min-confidence", "9")
    with pytest.raises(CommandError, match="--output"):
        call_command("agreement_report", "small", "--format", "png")


@pytest.mark.django_db
def test_report_page_downloads_and_api_are_staff_only(client):
    small_study()
    page = reverse("reports:study_report", args=["small"])
    download = reverse("reports:study_report_download", args=["small", "csv"])
    api = "/api/studies/small/report/"
    assert client.get(page).status_code == 302 and client.get(download).status_code == 302
    annotator = User.objects.create_user("ann2", password="pw")
    client.force_login(annotator)
    assert client.get(page).status_code == 403 and client.get(download).status_code == 403
    api_client = APIClient()
    assert api_client.get(api).status_code in (401, 403)
    api_client.force_authenticate(annotator)
    assert api_client.get(api).status_code == 403

    staff = User.objects.create_user("boss", password="pw", is_staff=True)
    client.force_login(staff)
    body = client.get(page).content.decode()
    assert "<svg" in body and "Download" in body and reverse("reports:study_report_download", args=["small", "tex"]) in body
    response = client.get(download + "?min_confidence=1")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="small-agreement-c1.csv"' in response["Content-Disposition"]
    assert client.get(page + "?min_confidence=zero").status_code == 400
    assert client.get(reverse("reports:study_report_download", args=["small", "docx"])).status_code == 404
    api_client.force_authenticate(staff)
    data = api_client.get(api, {"min_confidence": 1}).json()
    assert data["min_confidence"] == 1 and data["questions"]["q1"]["llm"]["LLM-145"]["valid"] == 4
    bad = api_client.get(api, {"min_confidence": 7})
    assert bad.status_code == 400 and "min_confidence" in bad.json()
    assert api_client.get("/api/studies/none/report/").status_code == 404


@pytest.mark.django_db
def test_download_buttons_partial_renders_for_any_study_page():
    from django.template.loader import render_to_string

    study = small_study()
    html = render_to_string("reports/_download_buttons.html", {"study": study})
    for fmt in ("json", "csv", "html", "tex", "svg", "png"):
        assert reverse("reports:study_report_download", args=[study.slug, fmt]) in html
    assert reverse("reports:study_report", args=[study.slug]) in html


@pytest.mark.django_db(transaction=True)
def test_report_outside_a_transaction_reads_one_snapshot_and_leaves_no_transaction_open():
    # On PostgreSQL the report runs in a REPEATABLE READ, READ ONLY transaction of its own.
    from django.db import connection

    study = small_study()
    report = report_build(study=study)
    assert report["questions"]["q1"]["valid"] == 4
    assert not connection.in_atomic_block
    Rating.objects.filter(item__key="i5").delete()  # the connection can still write afterwards
    assert report_build(study=study)["questions"]["q1"]["items"] == 4


@pytest.mark.django_db
def test_a_study_without_ratings_reports_zeros_in_every_format():
    study = study_create("empty")
    report = report_build(study=study)
    assert all(q["items"] == 0 and q["valid"] == 0 and q["llm"] == {} for q in report["questions"].values())
    assert report["annotators"] == [] and report["manifest"]["items"]["count"] == 0
    for fmt in ("json", "csv", "html", "tex", "svg", "png"):
        assert report_render(report=report, fmt=fmt)
