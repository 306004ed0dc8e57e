"""Issue 20: agreement robust to a dominant category, human + judge labels combined, judge audit, power.

Every figure is checked against the maintained package called directly on the same arrays
(irrCAC, statsmodels, krippendorff, ppi_py, scikit-learn), on a seeded study where "similar"
dominates, the case where Fleiss' kappa collapses although raters mostly agree.
"""
import csv
import io
import json

import krippendorff
import numpy as np
import pandas as pd
import pytest
from django.core.management import call_command
from ppi_py import classical_mean_ci, ppi_mean_ci
from sklearn.calibration import calibration_curve
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

from annotation.aggregation import LABELS, study_aggregate
from annotation.models import Item, Rating
from annotation.planner import (
    decisive_needed,
    smallest_detectable_gap,
    study_plan,
)
from judge.models import JudgeRun
from reports import report_build, report_render
from reports.agreement import (
    INTERVAL_MIN_ITEMS,
    agreement_resampled,
    bootstrap_weights,
    fleiss_kappa_weighted,
    gwet_ac1_weighted,
    krippendorff_alpha_weighted,
)
from reports.figures import figure2_intervals
from tests.factories import ratings_create, study_create

HUMANS = ("ann", "bob", "cat")
JUDGE = "LLM-2000"


def dominant_similar_study(*, judge_model="HuggingFaceTB/SmolLM2-135M-Instruct", seed=7):
    """80 items rated by 3 humans on q1 (about 75% "similar"), a judge on those and on 120 more.

    The judge agrees with the true label 80% of the time; its two orders and probabilities are
    stored in Rating.meta as judge.services writes them. Half the challenger responses are longer.
    """
    rng = np.random.default_rng(seed)
    study = study_create("dominant", overlap=3, min_confidence=1, seed=5)
    study.challenger_name = "PostGRAG (SmolLM2-135M)"
    study.save(update_fields=["challenger_name"])
    truth = rng.choice(3, size=200, p=[0.12, 0.13, 0.75])
    rows = []
    for i in range(80):
        for rater in HUMANS:
            code = truth[i] if rng.random() < 0.85 else rng.choice(3)
            rows.append((f"i{i:03d}", rater, "q1", LABELS[code], int(rng.integers(2, 6))))
    ratings_create(study, rows)
    ratings_create(study, [(f"i{i:03d}", "placeholder", "q2", "similar", 5) for i in range(80, 200)])
    Rating.objects.filter(item__study=study, question="q2").delete()
    items = {i.key: i for i in Item.objects.filter(study=study)}
    for n, item in enumerate(items.values()):
        item.challenger_response = item.baseline_response + (" and more words" if n % 2 else "")
        item.baseline_response = item.baseline_response + ("" if n % 2 else " and more words here")
    Item.objects.bulk_update(items.values(), ["baseline_response", "challenger_response"])
    judge_rows = []
    for i in range(200):
        code = truth[i] if rng.random() < 0.8 else rng.choice(3)
        probabilities = dict(zip(LABELS, rng.dirichlet(np.ones(3))))
        top = max(probabilities, key=probabilities.get)
        probabilities[top], probabilities[LABELS[code]] = probabilities[LABELS[code]], probabilities[top]
        flipped = LABELS[code] == "similar" and rng.random() < 0.4
        orders = ({"A": "baseline", "B": "challenger"} if flipped
                  else {"A": LABELS[code], "B": LABELS[code] if rng.random() < 0.8 else "similar"})
        judge_rows.append(Rating(item=items[f"i{i:03d}"], question="q1", rater=JUDGE, rater_kind=Rating.RaterKind.LLM,
                                 choice=LABELS[code], confidence=3,
                                 meta={"probabilities": probabilities, "orders": orders, "flipped": flipped}))
    Rating.objects.bulk_create(judge_rows)
    JudgeRun.objects.create(name=JUDGE, study=study, model_id=judge_model, prompt_version="judge-v1")
    return study


def human_counts(study):
    """items x (baseline, challenger, similar) counts of q1's human ratings, and the raters x items array."""
    frame = pd.DataFrame(list(Rating.objects.filter(item__study=study, question="q1", rater_kind="human")
                              .values_list("item_id", "rater", "choice")), columns=["item", "rater", "choice"])
    wide = frame.pivot(index="item", columns="rater", values="choice")
    codes = wide.apply(lambda col: col.map({label: k for k, label in enumerate(LABELS)})).astype(float)
    counts = np.stack([(codes.to_numpy() == k).sum(axis=1) for k in range(3)], axis=1)
    return counts, codes


@pytest.mark.django_db
def test_gwet_ac1_fleiss_and_krippendorff_match_the_packages_when_similar_dominates():
    irr_raw = pytest.importorskip("irrCAC.raw", reason="irrCAC pins old scipy/pandas; install with --no-deps to check")
    study = dominant_similar_study()
    q1 = report_build(study=study)["questions"]["q1"]
    counts, codes = human_counts(study)
    reference = irr_raw.CAC(codes.reset_index(drop=True), categories=[0.0, 1.0, 2.0]).gwet()["est"]
    assert q1["gwet_ac1"] == pytest.approx(reference["coefficient_value"], abs=1e-5)
    assert q1["fleiss_kappa"] == pytest.approx(fleiss_kappa(counts))
    assert q1["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=codes.to_numpy().T, level_of_measurement="nominal", value_domain=[0, 1, 2]))
    # "Similar" dominates: the report says so, and AC1 sees the agreement kappa misses (the kappa paradox).
    assert q1["dominant_category"]["label"] == "similar" and q1["dominant_category"]["share"] > 0.6
    assert q1["gwet_ac1"] > q1["fleiss_kappa"] + 0.1
    assert 0 < q1["prevalence_index"] < 1 and 0 <= q1["bias_index"] < 0.5
    for name in ("fleiss_kappa", "krippendorff_alpha", "krippendorff_alpha_ordinal", "gwet_ac1"):
        low, high = q1["agreement_ci95"][name]
        assert low < q1[name] < high, name
    html = report_render(report=report_build(study=study), fmt="html")
    assert "kappa paradox" in html


def test_bootstrap_resamples_equal_the_packages_on_the_resampled_tables():
    irr_raw = pytest.importorskip("irrCAC.raw", reason="irrCAC pins old scipy/pandas; install with --no-deps to check")
    rng = np.random.default_rng(3)
    counts = rng.multinomial(3, [0.1, 0.1, 0.8], size=60)
    weights = bootstrap_weights(n_items=60, resamples=3, seed=1)
    kappas = fleiss_kappa_weighted(counts=counts, weights=weights)
    ac1 = gwet_ac1_weighted(counts=counts, weights=weights)
    for row, kappa, gwet in zip(weights, kappas, ac1):
        resampled = np.repeat(counts, row.astype(int), axis=0)
        assert kappa == pytest.approx(fleiss_kappa(resampled))
        raw = pd.DataFrame([[k for k in range(3) for _ in range(c[k])] for c in resampled], dtype=float)
        assert gwet == pytest.approx(irr_raw.CAC(raw, categories=[0.0, 1.0, 2.0]).gwet()["est"]["coefficient_value"],
                                     abs=1e-5)
        ordinal = np.repeat(counts[:, [0, 2, 1]], row.astype(int), axis=0)  # baseline < similar < challenger
        data = np.array([[k for k in range(3) for _ in range(c[k])] for c in ordinal], dtype=float).T
        alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal", value_domain=[0, 1, 2])
        assert krippendorff_alpha_weighted(counts=counts[:, [0, 2, 1]], level="ordinal", weights=row[None])[0] == (
            pytest.approx(alpha))
    # The one-pass version used by the report gives the same numbers.
    together = agreement_resampled(counts=counts, weights=weights, ordinal_order=[0, 2, 1], fleiss=True)
    assert together["fleiss_kappa"] == pytest.approx(kappas) and together["gwet_ac1"] == pytest.approx(ac1)
    assert together["krippendorff_alpha_ordinal"] == pytest.approx(
        krippendorff_alpha_weighted(counts=counts[:, [0, 2, 1]], level="ordinal", weights=weights))


@pytest.mark.django_db
def test_prediction_powered_shares_and_win_rate_match_ppi_py():
    study = dominant_similar_study()
    report = report_build(study=study)
    q1 = report["questions"]["q1"]
    aggregate = study_aggregate(study=study)
    human = aggregate.human.xs("q1", level="question")
    human = human.loc[human["status"] == "valid", "code"]
    judge = aggregate.llm[JUDGE].xs("q1", level="question")["code"]
    both = human.index.intersection(judge.index)
    only = judge.index.difference(human.index)
    onehot = np.eye(3)
    y, yhat, yhat_unl = onehot[human.loc[both]], onehot[judge.loc[both]], onehot[judge.loc[only]]
    low, high = ppi_mean_ci(y, yhat, yhat_unl, alpha=0.05)
    combined = q1["llm"][JUDGE]["ppi"]
    assert (combined["labelled"], combined["judge_only"]) == (len(both), len(only)) and len(only) >= 120
    for k, label in enumerate(LABELS):
        assert combined["ci95"][label] == pytest.approx([low[k], high[k]])
        assert combined["ci95"][label][0] < combined["share"][label] < combined["ci95"][label][1]
    # Win rate: delta method; its interval is ppi_mean_ci of the linearisation at the PPI shares.
    p_c, p_b = combined["share"]["challenger"], combined["share"]["baseline"]
    assert combined["win_rate"]["challenger"] == pytest.approx(p_c / (p_c + p_b))

    def psi(a):
        return (p_b * a[:, 1] - p_c * a[:, 0]) / (p_c + p_b) ** 2

    w_low, w_high = ppi_mean_ci(psi(y), psi(yhat), psi(yhat_unl), alpha=0.05)
    width = combined["win_rate"]["ci95"][1] - combined["win_rate"]["ci95"][0]
    assert width == pytest.approx(float(w_high[0] - w_low[0]))
    # Human-only and judge-only intervals beside it: ppi_py's classical CLT interval on each group's labels.
    for group, codes in (("human_only", human), ("judge_only", judge)):
        numbers = q1[group] if group == "human_only" else q1["llm"][JUDGE][group]
        lo, hi = classical_mean_ci(onehot[codes][:, 2], alpha=0.05)
        assert numbers["ci95"]["similar"] == pytest.approx([lo, hi])
    # A judge that agrees 80% of the time on 120 extra items is worth more than nothing.
    assert combined["effective_human_labels"] > combined["labelled"] and combined["judge_worth"] > 0
    assert report["manifest"]["software"]["ppi-python"] and report["manifest"]["software"]["scikit-learn"]
    manifest = report["manifest"]["combined_labels"]["questions"]["q1"][JUDGE]
    assert manifest == {"labelled_by_both": len(both), "judge_only": len(only), "human_only_total": len(human),
                        "judge_total": 200}
    # Figure 2's error bars are the groups' intervals.
    assert figure2_intervals(report=report)["Human"]["q1"]["similar"] == q1["human_only"]["ci95"]["similar"]


@pytest.mark.django_db
def test_judge_audit_matches_scikit_learn_and_statsmodels_and_flags_self_preference():
    study = dominant_similar_study()
    report = report_build(study=study)
    llm = report["questions"]["q1"]["llm"][JUDGE]
    audit = llm["audit"]
    ratings = list(Rating.objects.filter(item__study=study, rater=JUDGE).select_related("item"))
    flipped = sum(r.meta["flipped"] for r in ratings)
    assert audit["flip_rate"]["share"] == pytest.approx(flipped / 200)
    first = [(choice == ("baseline" if side == "A" else "challenger"))
             for r in ratings for side, choice in r.meta["orders"].items() if choice != "similar"]
    low, high = proportion_confint(sum(first), len(first), alpha=0.05, method="wilson")
    assert audit["first_position"]["share"] == pytest.approx(np.mean(first))
    assert audit["first_position"]["ci95"] == pytest.approx([low, high])
    decisive = [r for r in ratings if r.choice != "similar"]
    longer = [(r.choice == "challenger") == (len(r.item.challenger_response) > len(r.item.baseline_response))
              for r in decisive]
    assert audit["length_preference"]["share"] == pytest.approx(np.mean(longer))
    aggregate = study_aggregate(study=study)
    human = aggregate.human.xs("q1", level="question")
    human = human.loc[human["status"] == "valid", "code"]
    by_item = {r.item_id: r for r in ratings}
    judge_code = np.array([LABELS.index(by_item[i].choice) for i in human.index])
    confidence = np.array([by_item[i].meta["probabilities"][by_item[i].choice] for i in human.index])
    correct = (judge_code == human.to_numpy()).astype(int)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=5, strategy="uniform")
    bins = audit["calibration"]["bins"]
    assert [b["share_correct"] for b in bins] == pytest.approx(list(prob_true))
    assert [b["mean_confidence"] for b in bins] == pytest.approx(list(prob_pred))
    ece = sum(b["n"] / len(correct) * abs(b["share_correct"] - b["mean_confidence"]) for b in bins)
    assert audit["calibration"]["ece"] == pytest.approx(ece)
    assert llm["cohen_kappa_vs_human"] == pytest.approx(cohen_kappa_score(human.to_numpy(), judge_code))
    k_low, k_high = audit["cohen_kappa_ci95"]
    assert k_low < llm["cohen_kappa_vs_human"] < k_high
    # SmolLM2 judging a SmolLM2-based challenger: flagged.
    assert report["judges"][JUDGE]["self_preference"] == {"judge_family": "smollm", "matches": ["challenger"],
                                                          "flag": True}


@pytest.mark.django_db
def test_a_judge_of_another_family_is_not_flagged():
    study = dominant_similar_study(judge_model="meta-llama/Llama-3.1-8B-Instruct")
    assert report_build(study=study)["judges"][JUDGE]["self_preference"]["flag"] is False


@pytest.mark.django_db
def test_every_export_carries_the_new_figures():
    study = dominant_similar_study()
    report = report_build(study=study)
    rows = list(csv.reader(io.StringIO(report_render(report=report, fmt="csv"))))
    metrics = {(r[0], r[2], r[3]): r[4] for r in rows[1:] if r[1] in ("q1", "")}
    q1 = report["questions"]["q1"]
    assert float(metrics[("question", "Human", "gwet_ac1")]) == pytest.approx(q1["gwet_ac1"])
    assert float(metrics[("question", "Human", "agreement_ci95_gwet_ac1_0")]) == pytest.approx(
        q1["agreement_ci95"]["gwet_ac1"][0])
    assert float(metrics[("llm", JUDGE, "ppi_win_rate_challenger")]) == pytest.approx(
        q1["llm"][JUDGE]["ppi"]["win_rate"]["challenger"])
    assert float(metrics[("llm", JUDGE, "audit_calibration_ece")]) == pytest.approx(
        q1["llm"][JUDGE]["audit"]["calibration"]["ece"])
    assert metrics[("judge", JUDGE, "judge_self_preference_flag")] == "True"
    assert float(metrics[("question", "Human", "smallest_detectable_gap")]) == pytest.approx(q1["smallest_detectable_gap"])
    tex = report_render(report=report, fmt="tex")
    assert "Gwet AC1" in tex and "prediction-powered inference" in tex and "smollm as the challenger" in tex
    html = report_render(report=report, fmt="html")
    assert "Judge audit" in html and "Self-preference risk" in html and "PPI" in html
    loaded = json.loads(report_render(report=report, fmt="json"))
    assert loaded["questions"]["q1"]["llm"][JUDGE]["audit"]["calibration"]["bins"]
    assert "NaN" not in report_render(report=report, fmt="json")
    assert report_render(report=report, fmt="svg").count("<svg") == 1


def test_planner_agrees_with_statsmodels_and_inverts_itself():
    decisive = decisive_needed(gap=0.2)
    effect = proportion_effectsize(0.6, 0.5)
    analysis = NormalIndPower()
    assert analysis.power(effect_size=effect, nobs1=decisive, alpha=0.05, ratio=0) >= 0.8
    assert analysis.power(effect_size=effect, nobs1=decisive - 1, alpha=0.05, ratio=0) < 0.8
    plan = study_plan(gap=0.2, tie_share=0.6, overlap=3, labelled_share=0.9, items_per_rater=200)
    assert plan["items"] == int(np.ceil(decisive / (0.4 * 0.9))) and plan["raters"] == int(np.ceil(plan["items"] * 3 / 200))
    assert smallest_detectable_gap(decisive=decisive) == pytest.approx(0.2, abs=2e-3)
    with pytest.raises(ValueError, match="tie_share"):
        study_plan(gap=0.2, tie_share=1.0)
    with pytest.raises(ValueError, match="gap"):
        study_plan(gap=0.0, tie_share=0.5)


def test_plan_study_command_prints_the_plan(capsys):
    call_command("plan_study", "--gap", "0.2", "--tie-share", "0.6", "--json")
    plan = json.loads(capsys.readouterr().out)
    assert plan == study_plan(gap=0.2, tie_share=0.6)


@pytest.mark.django_db
def test_planner_page_and_manage_page_helper(client):
    from django.contrib.auth.models import User
    from django.urls import reverse

    url = reverse("annotation:study_plan")
    query = {"gap": "0.2", "tie_share": "0.6", "overlap": "3", "labelled_share": "0.9", "items_per_rater": "200"}
    assert client.get(url, query).status_code == 302  # staff only
    client.force_login(User.objects.create_user("boss", password="pw", is_staff=True))
    plan = study_plan(gap=0.2, tie_share=0.6)
    body = client.get(url, query).content.decode()
    assert f"{plan['items']} items" in body and f"{plan['raters']} raters" in body and "<html" in body
    fragment = client.get(url, query, headers={"HX-Request": "true"}).content.decode()
    assert f"{plan['items']} items" in fragment and "<html" not in fragment
    bad = client.get(url, {**query, "tie_share": "1.5"})
    assert bad.status_code == 400 and "less than or equal to 0.99" in bad.content.decode()
    study = dominant_similar_study()
    manage = client.get(reverse("annotation:study_manage", args=[study.slug])).content.decode()
    assert 'aria-label="Study planner"' in manage and url in manage
    report = client.get(reverse("reports:study_report", args=[study.slug])).content.decode()
    assert "Smallest detectable gap" in report and "Judge audit" in report
    launch = client.get(reverse("worker:job_launch", args=["study"])).content.decode()
    assert url in launch  # the study creation form points to the planner
    api = client.get(f"/api/studies/{study.slug}/report/")
    assert api.status_code == 200 and api.json()["questions"]["q1"]["llm"][JUDGE]["ppi"]["judge_worth"] > 0


def ranked_studies():
    """Three studies over systems Alpha, Beta, Gamma on q1, mostly "similar": Alpha > Beta > Gamma."""
    plan = {  # (baseline, challenger): human majority labels (baseline wins, challenger wins, similar)
        ("Beta", "Alpha"): (6, 14, 40),
        ("Gamma", "Beta"): (5, 12, 45),
        ("Gamma", "Alpha"): (3, 15, 30),
    }
    for n, ((baseline, challenger), (bw, cw, ties)) in enumerate(plan.items()):
        study = study_create(f"rank{n}", seed=n)
        study.baseline_name, study.challenger_name = baseline, challenger
        study.save()
        labels = ["baseline"] * bw + ["challenger"] * cw + ["similar"] * ties
        ratings_create(study, [(f"i{i}", rater, "q1", label, 4) for i, label in enumerate(labels) for rater in HUMANS])
        # The judge sees each study the other way round on decisive items: its ranking is its own.
        ratings_create(study, [(f"i{i}", f"judge-{n}", "q1", {"baseline": "challenger", "challenger": "baseline"}.get(label, label),
                             4, Rating.RaterKind.LLM) for i, label in enumerate(labels)])
        JudgeRun.objects.create(name=f"judge-{n}", study=study, model_id="qwen2.5-7b", prompt_version="v1")
    return plan


@pytest.mark.django_db
def test_systems_ranked_by_bradley_terry_match_choix_and_leave_ties_out():
    import choix

    from reports.ranking_build import ranking_render, systems_ranking_build

    plan = ranked_studies()
    ranking = systems_ranking_build(resamples=200, seed=1)
    human = ranking["rankings"]["Human"]["q1"]["systems"]
    assert [row["system"] for row in human] == ["Alpha", "Beta", "Gamma"]
    systems = sorted({s for pair in plan for s in pair})
    wins = np.zeros((3, 3))
    for (baseline, challenger), (bw, cw, _) in plan.items():
        wins[systems.index(baseline), systems.index(challenger)] += bw
        wins[systems.index(challenger), systems.index(baseline)] += cw
    expected = choix.ilsr_pairwise_dense(wins, alpha=0.01)
    for row in human:
        assert row["strength"] == pytest.approx(expected[systems.index(row["system"])], abs=1e-6)
        assert row["ci95"][0] <= row["strength"] <= row["ci95"][1]
    assert human[0]["rank_ci95"][0] == 1
    # The judge (one model over three studies) is ranked separately, and reversed here.
    judge = ranking["rankings"]["Judge qwen2.5-7b"]["q1"]["systems"]
    assert [row["system"] for row in judge] == ["Gamma", "Beta", "Alpha"]
    assert "left out" in ranking["tie_rule"] and ranking["software"]["choix"]
    rows = list(csv.reader(io.StringIO(ranking_render(ranking=ranking, fmt="csv"))))
    assert rows[1][:3] == ["Human", "q1", "Alpha"] and float(rows[1][3]) == pytest.approx(human[0]["strength"])
    tex = ranking_render(ranking=ranking, fmt="tex")
    assert "Alpha" in tex and "tie rule" in tex
    assert json.loads(ranking_render(ranking=ranking, fmt="json"))["rankings"]["Human"]["q1"]["systems"] == human


@pytest.mark.django_db
def test_ranking_page_and_downloads_are_staff_only(client):
    from django.contrib.auth.models import User
    from django.urls import reverse

    ranked_studies()
    page = reverse("reports:systems_ranking")
    assert client.get(page).status_code == 302
    client.force_login(User.objects.create_user("boss", password="pw", is_staff=True))
    body = client.get(page).content.decode()
    assert "Systems ranked across studies" in body and "Alpha" in body and "Tie rule" in body
    download = client.get(reverse("reports:systems_ranking_download", args=["csv"]))
    assert download.status_code == 200 and download["Content-Type"].startswith("text/csv")
    assert client.get(reverse("reports:systems_ranking_download", args=["xls"])).status_code == 404


def test_bt_ranking_rejects_bad_indices():
    from reports.ranking import bt_ranking

    with pytest.raises(ValueError, match="system indices"):
        bt_ranking(systems=["a", "b"], comparisons=[(0, 2, 1, 1, 0)])


def test_model_family_reads_model_ids_and_not_words_that_start_like_one():
    from reports.audit import model_family, self_preference

    assert model_family("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm"
    assert model_family("Qwen/Qwen2.5-32B-Instruct") == "qwen" and model_family("microsoft/phi-3-mini") == "phi"
    assert model_family("philosophy-bot") is None and model_family("optimised PostGRAG") is None
    assert self_preference(judge_model="meta-llama/Llama-3.1-8B", systems={"baseline": ["PreSFT (llama-3.2-1b)"],
                                                                          "challenger": ["PostGRAG", "bart-base"]}) == {
        "judge_family": "llama", "matches": ["baseline"], "flag": True}


@pytest.mark.django_db
def test_gwet_ac1_prevalence_and_bias_of_the_hand_worked_small_study():
    """Runs without irrCAC: the values are worked by hand on test_reports' small study.

    Counts (baseline, challenger, similar): i1 (3,0,0), i2 (2,1,0), i3 (0,2,1), i4 (0,0,3), i5 (1,1,0).
    pa = (1 + 1/3 + 1/3 + 1 + 0) / 5 = 8/15; propensities (13, 9, 8) / 30;
    pe = (13*17 + 9*21 + 8*22) / 900 / 2 = 293/900; AC1 = (480 - 293) / (900 - 293) = 187/607.
    Pooled shares (6, 4, 4) / 14: prevalence 6/14 - 4/14 = 1/7. Raters' shares ann (3,1,1)/5,
    bob (2,2,1)/5, cat (1,1,2)/4: total-variation sums 12/35, 8/35, 3/7, weighted by 5, 5, 4 of 14: 16/49.
    """
    from tests.annotation.test_reports import small_study

    q1 = report_build(study=small_study())["questions"]["q1"]
    assert q1["gwet_ac1"] == pytest.approx(187 / 607)
    assert q1["prevalence_index"] == pytest.approx(1 / 7)
    assert q1["bias_index"] == pytest.approx(16 / 49)
    assert q1["dominant_category"] is None  # 6 of 14 is below the 60% that triggers the note


@pytest.mark.django_db
def test_a_study_rated_only_by_a_judge_renders_every_format_without_nan():
    study = study_create("judge-only")
    ratings_create(study, [(f"i{i}", JUDGE, "q1", LABELS[i % 3], 4, Rating.RaterKind.LLM) for i in range(12)])
    JudgeRun.objects.create(name=JUDGE, study=study, model_id="qwen2.5-7b", prompt_version="v1")
    report = report_build(study=study)
    llm = report["questions"]["q1"]["llm"][JUDGE]
    assert llm["ppi"]["labelled"] == 0 and llm["ppi"]["win_rate"]["challenger"] is None
    assert llm["judge_only"]["share"]["similar"] == pytest.approx(1 / 3)
    assert llm["audit"]["cohen_kappa_ci95"] == [None, None] and llm["audit"]["calibration"]["ece"] is None
    for fmt in ("json", "csv", "html", "tex", "svg"):
        assert "NaN" not in report_render(report=report, fmt=fmt)


@pytest.mark.django_db
@pytest.mark.parametrize("n_items", [1, 9, 10])
def test_agreement_intervals_are_withheld_below_ten_items_and_the_report_says_why(n_items):
    """An item bootstrap over one item gives a zero-width 'interval'; under INTERVAL_MIN_ITEMS none is shown."""
    study = study_create(f"few{n_items}", overlap=3, min_confidence=1)
    ratings_create(study, [(f"i{i}", rater, "q1", LABELS[(i + k) % 3 if k == 2 else i % 3], 4)
                           for i in range(n_items) for k, rater in enumerate(HUMANS)])
    report = report_build(study=study)
    q1 = report["questions"]["q1"]
    html = report_render(report=report, fmt="html")
    rows = list(csv.reader(io.StringIO(report_render(report=report, fmt="csv"))))
    withheld = [r for r in rows if r[:4] == ["question", "q1", "Human", "interval_withheld"]]
    if n_items < INTERVAL_MIN_ITEMS:
        assert q1["agreement_ci95"]["gwet_ac1"] == [None, None] and q1["gwet_ac1"] is not None
        assert q1["interval_withheld"] == f"{n_items} items with ratings: intervals need at least {INTERVAL_MIN_ITEMS}"
        assert "no 95% intervals" in html and withheld[0][4] == q1["interval_withheld"]
    else:
        low, high = q1["agreement_ci95"]["gwet_ac1"]
        assert low is not None and low <= q1["gwet_ac1"] <= high
        assert q1["interval_withheld"] is None and "no 95% intervals" not in html and withheld[0][4] == ""
