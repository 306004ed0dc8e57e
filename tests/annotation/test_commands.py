"""Management commands: import_study, add_annotator, import_votes, export_votes (JSON line out, CommandError on bad input)."""
import io
import json

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from annotation.models import Item, Rating, Study
from tests.factories import jsonl_write, toy_study, toy_study_lines

pytestmark = pytest.mark.django_db
HEADER = "item_key,rater,rater_kind,question,choice,confidence"


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_import_study_prints_json_and_a_second_import_changes_nothing(tmp_path):
    path = jsonl_write(tmp_path / "s.jsonl", toy_study_lines(4))
    args = ("import_study", path, "--slug", "cmd", "--baseline", "PreSFT(Hist)", "--challenger", "PostGRAG", "--overlap", "2")
    assert json.loads(run(*args)) == {"study": "cmd", "items": 4}
    ids = sorted(Item.objects.values_list("public_id", flat=True))
    assert json.loads(run(*args)) == {"study": "cmd", "items": 4}
    assert sorted(Item.objects.values_list("public_id", flat=True)) == ids
    assert Study.objects.get().overlap == 2


def test_import_study_bad_line_is_a_command_error_and_writes_nothing(tmp_path):
    lines = [json.dumps(x) for x in toy_study_lines(3)]
    lines[1] = lines[1][:40]  # truncated
    path = jsonl_write(tmp_path / "t.jsonl", lines)
    with pytest.raises(CommandError, match=r"t.jsonl:2: not valid JSON"):
        run("import_study", path, "--slug", "t", "--baseline", "PreSFT(Hist)", "--challenger", "PostGRAG")
    with pytest.raises(CommandError, match="no such file"):
        run("import_study", str(tmp_path / "missing.jsonl"), "--slug", "t", "--baseline", "a", "--challenger", "b")
    assert not Study.objects.exists()


def test_add_annotator_creates_then_updates_and_refuses_an_unknown_study(tmp_path):
    study = toy_study(tmp_path, n=1, slug="aa")
    assert json.loads(run("add_annotator", "ann", "--password", "pw-12345678", "--study", "aa")) == {
        "annotator": "ann", "study": "aa"}
    user = User.objects.get(username="ann")
    assert user.check_password("pw-12345678") and study.annotators.filter(pk=user.pk).exists()
    # Issue 17: the command adds an existing account but never resets its password.
    with pytest.raises(CommandError, match="already has an account"):
        run("add_annotator", "ann", "--password", "changed-pw-1")
    user.refresh_from_db()
    assert user.check_password("pw-12345678")
    with pytest.raises(CommandError, match="no study 'nope'"):
        run("add_annotator", "bob", "--study", "nope")
    assert not User.objects.filter(username="bob").exists()


def votes_file(tmp_path, rows, name="votes.csv", header=HEADER) -> str:
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def test_import_votes_then_export_gives_the_same_rows_and_reimport_changes_nothing(tmp_path):
    toy_study(tmp_path, n=2, slug="v")
    rows = [
        f"spc/test/{i},{rater},{kind},{q},{choice},{conf}"
        for i in range(2)
        for rater, kind, choice, conf in (("alice", "human", "baseline", 4), ("gpt-judge", "llm", "similar", 2))
        for q in ("q1", "q2", "q3", "q4")
    ]
    path = votes_file(tmp_path, rows)
    assert json.loads(run("import_votes", "v", path)) == {"study": "v", "added": 16, "changed": 0, "unchanged": 0}
    assert json.loads(run("import_votes", "v", path)) == {"study": "v", "added": 0, "changed": 0, "unchanged": 16}
    assert Rating.objects.count() == 16
    # The export adds the raters' comments as a last column (issue 21): empty here.
    exported = run("export_votes", "v")
    assert sorted(exported.strip().splitlines()[1:]) == sorted(f"{row}," for row in rows)
    assert exported.splitlines()[0] == HEADER + ",comment"
    out = tmp_path / "out.csv"
    assert json.loads(run("export_votes", "v", "--output", str(out))) == {"study": "v", "ratings": 16, "path": str(out)}
    assert sorted(out.read_text().strip().splitlines()[1:]) == sorted(f"{row}," for row in rows)
    assert json.loads(run("import_votes", "v", str(out)))["unchanged"] == 16
    changed = votes_file(tmp_path, [rows[0].replace("baseline", "challenger")], name="changed.csv")
    assert json.loads(run("import_votes", "v", changed))["changed"] == 1
    assert Rating.objects.count() == 17 and Rating.objects.filter(is_current=True).count() == 16


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ("spc/test/0,bob,human,q1,maybe,3", "choice must be baseline, challenger or similar"),
        ("spc/test/0,bob,robot,q1,similar,3", "rater_kind must be human or llm"),
        ("spc/test/0,bob,human,q7,similar,3", "no question 'q7'"),
        ("spc/test/9,bob,human,q1,similar,3", "no item 'spc/test/9'"),
        ("spc/test/0,bob,human,q1,similar,high", "confidence must be a whole number"),
        ("spc/test/0,bob,human,q1,similar,6", "confidence must be from 1 to 5"),
        ("spc/test/0,bob,human,q1", "columns"),
        ("spc/test/0,alice,human,q1,similar,3", "first on line 2"),
    ],
)
def test_a_bad_vote_line_names_the_line_and_nothing_is_written(tmp_path, bad_row, message):
    toy_study(tmp_path, n=2, slug="v")
    path = votes_file(tmp_path, ["spc/test/0,alice,human,q1,baseline,4", "spc/test/1,alice,human,q1,baseline,4", bad_row])
    with pytest.raises(CommandError) as exc:
        run("import_votes", "v", path)
    assert "votes.csv:4:" in str(exc.value) and message in str(exc.value)
    assert not Rating.objects.exists()


def test_vote_files_with_missing_columns_or_wrong_encoding_are_refused(tmp_path):
    toy_study(tmp_path, n=1, slug="v")
    path = votes_file(tmp_path, ["spc/test/0,alice,q1,baseline,4"], header="item_key,rater,question,choice,confidence")
    with pytest.raises(CommandError, match="missing column.*rater_kind"):
        run("import_votes", "v", path)
    latin = tmp_path / "latin.csv"
    latin.write_bytes((HEADER + "\nspc/test/0,jos\xe9,human,q1,baseline,4\n").encode("latin-1"))
    with pytest.raises(CommandError, match="not UTF-8"):
        run("import_votes", "v", str(latin))
    with pytest.raises(CommandError, match="no study 'zzz'"):
        run("import_votes", "zzz", str(latin))
    assert not Rating.objects.exists()
