"""Table 3 from stored metrics: bold, imprv (%), exports, the results_table command, staff pages, ablation plots.

The metric rows are the GRAG paper's own Table 3 figures for SPC, so the imprv (%) rows must
reproduce the paper's printed improvements (computed there independently of this code).
"""
import csv
import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from modeling.metrics import METRICS
from modeling.models import Dataset, MetricResult, System
from modeling.tables import ablation_plot, ablation_series, result_table, table_csv, table_from_values, table_tex

# Table 3, SPC: Char-F1 ROUGE-1 ROUGE-2 ROUGE-L BLEU BPC BERT-P BERT-R BERT-F1
SPC = {
    "icl_hist": [0.231, 0.231, 0.088, 0.207, 5.967, 1.333, 0.674, 0.583, 0.622],
    "icl_tst": [0.167, 0.151, 0.033, 0.135, 3.237, 2.127, 0.625, 0.534, 0.573],
    "presft_hist": [0.317, 0.381, 0.235, 0.365, 17.444, 0.384, 0.709, 0.704, 0.704],
    "presft_tst": [0.285, 0.348, 0.200, 0.333, 14.500, 0.466, 0.694, 0.690, 0.689],
    "pregrag": [0.358, 0.430, 0.280, 0.414, 20.436, 0.381, 0.731, 0.732, 0.729],
    "postgrag": [0.366, 0.438, 0.288, 0.423, 21.086, 0.403, 0.741, 0.734, 0.735],
}
# The paper's imprv (%) rows for SPC over PreSFT(Hist).
PAPER_IMPRV = {
    "pregrag": [12.93, 12.86, 19.15, 13.42, 17.15, 0.78, 3.10, 3.98, 3.55],
    "postgrag": [15.46, 14.96, 22.55, 15.89, 20.88, -4.95, 4.51, 4.26, 4.40],
}


def store(system: System, values: list[float | None], split="test", signature="nrefs:1|case:mixed|eff:no|tok:13a"):
    for name, value in zip(METRICS, values):
        if value is not None:
            meta = {"signature": signature} if name == "bleu" else {}
            MetricResult.objects.create(system=system, split=split, name=name, value=value, meta=meta)


@pytest.fixture
def spc_systems(db):
    dataset = Dataset.objects.create(name="spc", kind=Dataset.Kind.SPC)
    systems = {}
    for method, values in SPC.items():
        systems[method] = System.objects.create(name=f"spc-{method}", method=method, dataset=dataset)
        store(systems[method], values)
    return systems


def test_table3_reproduces_the_papers_improvements_and_bold(spc_systems):
    s = spc_systems
    table = result_table(systems=list(s.values()), baseline=s["presft_hist"], challengers=[s["pregrag"], s["postgrag"]])
    assert [r.label for r in table.rows] == ["ICL(Hist)", "ICL(TST)", "PreSFT(Hist)", "PreSFT(TST)", "PreGRAG", "PostGRAG"]
    assert [r.marker for r in table.rows] == ["", "", "B", "", "C", "C"]
    for imp, method in zip(table.improvements, ["pregrag", "postgrag"]):
        got = [imp.values[m] for m in METRICS]
        assert got == pytest.approx(PAPER_IMPRV[method], abs=0.006), method
    # The paper's bold for SPC: PostGRAG everywhere except BPC, where PreGRAG's 0.381 is lowest.
    best = {r.system: r.best for r in table.rows}
    assert best["spc-postgrag"] == set(METRICS) - {"bpc"}
    assert best["spc-pregrag"] == {"bpc"}
    assert not best["spc-presft_hist"] and not best["spc-icl_hist"]


def test_ties_are_all_bold_and_missing_figures_print_a_dash(spc_systems):
    s = spc_systems
    twin = System.objects.create(name="spc-postgrag-seed2", method="postgrag", dataset=s["postgrag"].dataset)
    store(twin, [0.3661, 0.1, 0.1, 0.1, 1.0, None, None, None, None])  # prints 0.366 like PostGRAG; no BPC/BERT
    table = result_table(systems=[s["presft_hist"], s["postgrag"], twin], baseline=s["presft_hist"],
                         challengers=[twin])
    rows = {r.system: r for r in table.rows}
    assert "char_f1" in rows["spc-postgrag"].best and "char_f1" in rows["spc-postgrag-seed2"].best
    # Two PostGRAG runs: labels fall back to the systems' names.
    assert rows["spc-postgrag-seed2"].label == "spc-postgrag-seed2"
    assert rows["spc-postgrag-seed2"].cells[5] == ("-", False)
    assert table.improvements[0].values["bpc"] is None and table.improvements[0].cells[5] == "-"


def test_bold_is_per_task_when_the_table_spans_datasets(spc_systems):
    # Table 3's ED rows: PostGRAG is best on every ED column, BPC included (1.023 < 1.030),
    # although every SPC figure beats it.
    ed = Dataset.objects.create(name="ed", kind=Dataset.Kind.ED)
    ed_presft = System.objects.create(name="ed-presft_hist", method="presft_hist", dataset=ed)
    ed_postgrag = System.objects.create(name="ed-postgrag", method="postgrag", dataset=ed)
    store(ed_presft, [0.132, 0.165, 0.030, 0.148, 3.595, 1.030, 0.556, 0.578, 0.564])
    store(ed_postgrag, [0.146, 0.182, 0.041, 0.164, 4.087, 1.023, 0.567, 0.584, 0.573])
    s = spc_systems
    table = result_table(systems=[ed_presft, ed_postgrag, s["presft_hist"], s["postgrag"]])
    best = {r.system: r.best for r in table.rows}
    assert best["ed-postgrag"] == set(METRICS) and not best["ed-presft_hist"]
    assert best["spc-postgrag"] == set(METRICS) - {"bpc"} and best["spc-presft_hist"] == {"bpc"}
    tex = table_tex(table)
    assert "Task & Method & Char-F1" in tex and r"ed & PostGRAG & \textbf{0.146}" in tex  # one PostGRAG per task: the paper's name


def test_table_from_plain_values_without_the_database():
    # Table 3's PFG rows, BERTScore not computed: PreGRAG's BPC equals the baseline's (0.00 in the paper).
    table = table_from_values({
        "PreSFT(Hist)": {"char_f1": 0.166, "rouge2": 0.040, "bleu": 3.394, "bpc": 0.923},
        "PreGRAG": {"char_f1": 0.182, "rouge2": 0.057, "bleu": 4.109, "bpc": 0.923},
        "PostGRAG": {"char_f1": 0.186, "rouge2": 0.059, "bleu": 4.618, "bpc": 0.938},
    }, baseline="PreSFT(Hist)", challengers=["PreGRAG", "PostGRAG"], task="pfg")
    imprv = {i.challenger: i.values for i in table.improvements}
    assert imprv["PreGRAG"]["rouge2"] == pytest.approx(42.50, abs=0.006)
    assert imprv["PreGRAG"]["bpc"] == 0.0 and imprv["PostGRAG"]["bpc"] == pytest.approx(-1.63, abs=0.006)
    assert imprv["PostGRAG"]["bleu"] == pytest.approx(36.06, abs=0.006) and imprv["PostGRAG"]["bert_f1"] is None
    best = {r.label: r.best for r in table.rows}
    assert best["PreSFT(Hist)"] == best["PreGRAG"] == {"bpc"}  # a tie: both bold
    assert best["PostGRAG"] == {"char_f1", "rouge2", "bleu"}
    assert "PreGRAG,PreGRAG,challenger,0.182,,0.057,,4.109,0.923,,,,BPC" in table_csv(table)


def test_tex_export_is_booktabs_with_bold_and_markers(spc_systems):
    s = spc_systems
    tex = table_tex(result_table(systems=[s["presft_hist"], s["postgrag"]], baseline=s["presft_hist"],
                                 challengers=[s["postgrag"]]))
    lines = tex.splitlines()
    assert lines[0].startswith("% split: test; task: spc; BLEU: sacrebleu nrefs:1|case:mixed|eff:no|tok:13a")
    assert r"\toprule" in lines and r"\midrule" in lines and r"\bottomrule" in lines
    assert r"PostGRAG$^{C}$ & \textbf{0.366} & \textbf{0.438} & \textbf{0.288} & \textbf{0.423} & \textbf{21.086} & 0.403" in tex
    assert r"PreSFT(Hist)$^{B}$ & 0.317" in tex and r"\textbf{0.384}" in tex
    assert r"imprv (\%) PostGRAG & 15.46 & 14.96 & 22.55 & 15.89 & 20.88 & -4.95 & 4.51 & 4.26 & 4.40 \\" in tex


def test_results_table_command_csv_to_stdout(spc_systems, capsys):
    call_command("results_table", "--systems", "spc-presft_hist,spc-pregrag,spc-postgrag", "--baseline",
                 "spc-presft_hist", "--challengers", "spc-pregrag,spc-postgrag", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["method"] for r in rows] == ["PreSFT(Hist)", "PreGRAG", "PostGRAG", "imprv (%) PreGRAG",
                                           "imprv (%) PostGRAG"]
    assert float(rows[2]["BLEU"]) == 21.086 and rows[2]["role"] == "challenger"
    assert rows[1]["best"] == "BPC" and float(rows[4]["ROUGE-2"]) == pytest.approx(22.55, abs=0.006)


def test_results_table_command_json_to_a_file(spc_systems, tmp_path, capsys):
    out = tmp_path / "t3" / "table.json"
    call_command("results_table", "--baseline", "spc-presft_hist", "--challengers", "spc-postgrag",
                 "--format", "json", "--output", str(out))
    line = capsys.readouterr().out.strip()
    assert len(line.splitlines()) == 1
    summary = json.loads(line)
    assert summary["rows"] == 2 and summary["best"]["spc-postgrag"] == sorted(set(METRICS) - {"bpc"})
    data = json.loads(out.read_text())
    assert data["baseline"] == "spc-presft_hist" and data["columns"][5] == {
        "metric": "bpc", "header": "BPC", "lower_is_better": True}
    assert data["improvements"][0]["values"]["bpc"] == pytest.approx(-4.95, abs=0.006)
    assert data["meta"]["bleu_signature"]["spc-postgrag"].startswith("nrefs:1")


def test_results_table_command_html(spc_systems, capsys):
    call_command("results_table", "--systems", "spc-pregrag,spc-postgrag", "--format", "html")
    html = capsys.readouterr().out
    assert html.startswith("<!doctype html>") and "<strong>0.381</strong>" in html and "imprv" not in html.split("</caption>")[1]


def test_results_table_command_errors(spc_systems):
    with pytest.raises(CommandError, match="Unknown system\\(s\\): nope. Known systems: spc-icl_hist"):
        call_command("results_table", "--systems", "spc-pregrag,nope")
    with pytest.raises(CommandError, match="--baseline spc-icl_tst must be among --systems"):
        call_command("results_table", "--systems", "spc-pregrag,spc-postgrag", "--baseline", "spc-icl_tst")
    System.objects.create(name="untested", method="pregrag")
    with pytest.raises(CommandError, match="No metrics on split 'test' for untested: run `manage.py compute_metrics"):
        call_command("results_table", "--systems", "spc-pregrag,untested")
    with pytest.raises(CommandError, match="cannot be both the baseline and a challenger"):
        call_command("results_table", "--baseline", "spc-pregrag", "--challengers", "spc-pregrag,spc-postgrag",
                     "--systems", "spc-pregrag,spc-postgrag")
    with pytest.raises(CommandError, match="invalid choice: 'xls'"):
        call_command("results_table", "--systems", "spc-pregrag", "--format", "xls")


# --- ablation --------------------------------------------------------------------------------

@pytest.fixture
def beta_sweep(db):
    """PostGRAG runs over beta on two datasets; on SPC two learning rates share beta = 0.05."""
    ed = Dataset.objects.create(name="ed", kind=Dataset.Kind.ED)
    spc = Dataset.objects.create(name="spc", kind=Dataset.Kind.SPC)
    runs = [(ed, 0.0, 1e-4, 0.030), (ed, 0.5, 1e-4, 0.041), (ed, 10.0, 1e-4, 0.035),
            (spc, 0.0, 1e-4, 0.270), (spc, 0.05, 1e-4, 0.288), (spc, 0.05, 1e-5, 0.250)]
    for i, (dataset, beta, lr, rouge2) in enumerate(runs):
        system = System.objects.create(name=f"{dataset.name}-postgrag-{i}", method="postgrag", dataset=dataset,
                                       config={"alpha": 0.0, "beta": beta, "lr": lr})
        MetricResult.objects.create(system=system, split="test", name="rouge2", value=rouge2)
    System.objects.create(name="no-sweep", method="postgrag", dataset=ed, config={})


def test_ablation_series_one_line_per_dataset_best_run_per_value(beta_sweep):
    series = ablation_series(systems=System.objects.all(), param="beta", metric="rouge2")
    assert [(s.dataset, s.points, s.runs) for s in series] == [
        ("ed", [(0.0, 0.030), (0.5, 0.041), (10.0, 0.035)], [1, 1, 1]),
        ("spc", [(0.0, 0.270), (0.05, 0.288)], [1, 2]),
    ]
    svg = ablation_plot(series, param="beta", metric="rouge2", fmt="svg").decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    # matplotlib writes each text as a comment next to its glyphs: the legend names both datasets.
    assert "<!-- ed -->" in svg and "<!-- spc -->" in svg
    assert ablation_plot(series, param="beta", metric="rouge2", fmt="png")[:8] == b"\x89PNG\r\n\x1a\n"


# --- staff pages -----------------------------------------------------------------------------

@pytest.fixture
def staff_client(client, db):
    user = get_user_model().objects.create_user("boss", password="pw", is_staff=True)
    client.force_login(user)
    return client


TABLE_QUERY = "systems=spc-presft_hist&systems=spc-postgrag&baseline=spc-presft_hist&challengers=spc-postgrag&split=test"


@pytest.mark.parametrize("url", ["/results/", f"/results/table/?{TABLE_QUERY}", "/results/ablation/",
                                 f"/results/table/download/csv/?{TABLE_QUERY}", "/results/ablation/plot.svg?param=beta&metric=rouge2&split=test"])
def test_results_pages_are_staff_only(client, db, url):
    response = client.get(url)
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")
    client.force_login(get_user_model().objects.create_user("annotator", password="pw"))
    assert client.get(url).status_code == 403


def test_system_list_shows_run_metrics(staff_client, spc_systems):
    html = staff_client.get("/results/").content.decode()
    assert "spc-postgrag" in html and "21.086" in html and "PostGRAG" in html


def test_table_builder_renders_table3_and_downloads(staff_client, spc_systems):
    page = staff_client.get(f"/results/table/?{TABLE_QUERY}").content.decode()
    assert "<strong>0.366</strong>" in page and "PreSFT(Hist)<sup>B</sup>" in page and "22.55" in page
    assert "/results/table/download/tex/?" in page
    fragment = staff_client.get(f"/results/table/?{TABLE_QUERY}", headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<div id="result">') and "<html" not in fragment
    download = staff_client.get(f"/results/table/download/csv/?{TABLE_QUERY}")
    assert download["Content-Disposition"] == 'attachment; filename="table3.csv"'
    assert download.content.decode().splitlines()[0].startswith("task,method,system,role,Char-F1")
    tex = staff_client.get(f"/results/table/download/tex/?{TABLE_QUERY}").content.decode()
    assert r"\textbf{0.366}" in tex


def test_table_builder_explains_bad_choices(staff_client, spc_systems):
    page = staff_client.get("/results/table/?systems=spc-pregrag&baseline=spc-postgrag&split=test").content.decode()
    assert "The baseline spc-postgrag must be one of the chosen systems." in page
    response = staff_client.get("/results/table/download/csv/?systems=spc-pregrag&challengers=spc-postgrag&split=test")
    assert response.status_code == 400 and "Challengers must be chosen systems too" in response.content.decode()


def test_ablation_page_and_plot(staff_client, beta_sweep):
    page = staff_client.get("/results/ablation/?param=beta&metric=rouge2&method=postgrag&split=test").content.decode()
    assert "/results/ablation/plot.svg?" in page and "0.2880" in page
    plot = staff_client.get("/results/ablation/plot.png?param=beta&metric=rouge2&method=postgrag&split=test")
    assert plot["Content-Type"] == "image/png" and plot.content[:4] == b"\x89PNG"
    empty = staff_client.get("/results/ablation/?param=alpha&metric=bpc&split=test").content.decode()
    assert "None of the chosen runs has a stored bpc" in empty


def test_an_icl_setting_run_with_several_seeds_is_one_averaged_row(spc_systems):
    dataset = spc_systems["presft_hist"].dataset
    seeds = []
    for seed, rouge2 in enumerate([0.080, 0.090, 0.100]):
        system = System.objects.create(name=f"spc-icl_hist-3shot-seed{seed}", method="icl_hist", dataset=dataset,
                                       config={"seed_group": "spc-icl_hist-3shot", "seed": seed})
        store(system, [0.2, 0.2, rouge2, 0.2, 6.0, 1.3, 0.6, 0.6, 0.6 if seed else None])
        seeds.append(system)
    table = result_table(systems=[*seeds, spc_systems["presft_hist"]], baseline=seeds[1],
                         challengers=[spc_systems["presft_hist"]])
    (icl, presft) = table.rows
    assert icl.label == "ICL(Hist) (3 seeds)" and icl.system == "spc-icl_hist-3shot" and icl.marker == "B"
    assert icl.values["rouge2"] == pytest.approx(0.09)
    assert icl.values["bert_f1"] == pytest.approx(0.6)  # seeds without a figure are left out of its mean
    assert table.improvements[0].values["rouge2"] == pytest.approx((0.235 - 0.09) / 0.09 * 100)
