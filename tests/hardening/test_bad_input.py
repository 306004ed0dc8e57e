"""Bad input (issue 10): malformed dataset, study and vote files give a clear error naming the
file and line and write nothing; oversized request bodies are refused; ratings are append-only.

Every bad file starts with good lines, so "writes nothing" proves the import is one transaction,
not merely that it failed before its first write.
"""
from __future__ import annotations

import csv
import io
import json
import re
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from annotation import services
from annotation.models import Assignment, Item, Question, Rating, Study
from modeling.models import Conversation, Dataset, Sample
from tests.factories import jsonl_write

from .conftest import BASELINE, CHALLENGER, QKEYS, study_lines

pytestmark = pytest.mark.django_db
MODELS = (Dataset, Conversation, Sample, Study, Item, Question, Assignment, Rating, User)
FIVE_MB = 5 * 1024 * 1024


def _counts() -> dict[str, int]:
    return {m.__name__: m.objects.count() for m in MODELS}


def _refused(args: list[str], *, path, line: int, says: str) -> str:
    """Run a command that must fail: CommandError naming the file and line, nothing written."""
    before = _counts()
    with pytest.raises(CommandError) as info:
        call_command(*args, stdout=StringIO(), stderr=StringIO())
    message = str(info.value)
    assert _counts() == before, f"rows were written before the error: {message}"
    assert str(path) in message, f"the error does not name the file: {message}"
    assert re.search(rf"(:{line}\b|, line {line}\b)", message), f"the error does not name line {line}: {message}"
    assert re.search(says, message, re.IGNORECASE), f"the error does not say {says!r}: {message}"
    assert len(message) < 2000, "the error must not echo a huge line back"
    return message


# --------------------------------------------------------------------------- dataset files

def _conversation(i: int, **override) -> dict:
    row = {
        "id": f"c{i}", "split": "test", "agent_persona": ["I keep bees."], "user_persona": "I moved here.",
        "turns": [{"role": "user", "text": f"Hi {i}!"}, {"role": "agent", "text": "Hello, want some honey?"}],
    }
    row.update(override)
    return row


def _jsonl_bytes(rows: list) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


GOOD = [_conversation(1), _conversation(2)]
DATASET_CASES = {
    # name: (file bytes, line of the error, what the message must say)
    "truncated": (_jsonl_bytes(GOOD) + json.dumps(_conversation(3)).encode()[:40], 3, "json|truncated|expect"),
    "latin-1": (_jsonl_bytes([GOOD[0], json.dumps(_conversation(2, user_persona="café")).encode().replace(b"\\u00e9", b"\xe9")]),
                2, "UTF-8"),
    "utf-16": (_jsonl_bytes(GOOD).decode().encode("utf-16"), 1, "UTF-8"),
    "missing field": (_jsonl_bytes([GOOD[0], {k: v for k, v in _conversation(2).items() if k != "turns"}]), 2, "turns"),
    "very long line": (_jsonl_bytes([GOOD[0], _conversation(2, user_persona="x" * FIVE_MB)]), 2, "long|limit"),
    "wrong type": (_jsonl_bytes([GOOD[0], _conversation(2, turns="hello")]), 2, "turns"),
    "wrong role": (_jsonl_bytes([GOOD[0], _conversation(2, turns=[{"role": 5, "text": "x"}])]), 2, "role"),
}


@pytest.mark.parametrize("case", list(DATASET_CASES))
def test_bad_dataset_file_names_file_and_line_and_writes_nothing(case, tmp_path):
    data, line, says = DATASET_CASES[case]
    path = tmp_path / "conversations.jsonl"
    path.write_bytes(data)
    _refused(["import_dataset", "jsonl", str(path), "--name", "bad"], path=path, line=line, says=says)


SPC_HEADER = "user 1 personas,user 2 personas,Best Generated Conversation\n"
SPC_ROW = '"I like tea.\nI have a cat.","I run.\nI bake.","User 1: Hi!\nUser 2: Hello, I just baked bread.\nUser 1: Nice!\nUser 2: Want some?"\n'


@pytest.mark.parametrize(
    "case, text, line, says",
    [
        ("missing column", "user 1 personas,user 2 personas\n\"a\",\"b\"\n", 1, "Best Generated Conversation"),
        ("truncated record", SPC_HEADER + SPC_ROW + '"I like tea.","I run.","User 1: Hi!\nUser 2: Hel', 8, "truncated|broken|quote"),
        ("extra field", SPC_HEADER + SPC_ROW + '"a","b","User 1: Hi\nUser 2: Yo","surplus"\n', 8, "field|column"),
    ],
)
def test_bad_spc_csv_names_file_and_line_and_writes_nothing(case, text, line, says, tmp_path):
    path = tmp_path / "Synthetic-Persona-Chat_test.csv"
    path.write_text(text, encoding="utf-8")
    _refused(["import_dataset", "spc", str(path)], path=path, line=line, says=says)


# --------------------------------------------------------------------------- study files

def _study_bytes(rows: list) -> bytes:
    return _jsonl_bytes(rows)


S_GOOD = study_lines(2, tag="good")
STUDY_CASES = {
    "truncated": (_study_bytes(S_GOOD) + json.dumps(study_lines(3, tag="t")[2]).encode()[:50], 3, "JSON"),
    "latin-1": (_study_bytes([S_GOOD[0], json.dumps({**S_GOOD[1], "persona": "café"}).encode().replace(b"\\u00e9", b"\xe9")]),
                2, "UTF-8"),
    "utf-16": (_study_bytes(S_GOOD).decode().encode("utf-16"), 1, "UTF-8"),
    "missing responses": (_study_bytes([S_GOOD[0], {k: v for k, v in S_GOOD[1].items() if k != "responses"}]), 2, "responses"),
    "missing system": (_study_bytes([S_GOOD[0], {**S_GOOD[1], "responses": {BASELINE: "only one"}}]), 2, CHALLENGER),
    "very long line": (_study_bytes([S_GOOD[0], {**S_GOOD[1], "persona": "x" * FIVE_MB}]), 2, "longer|limit"),
    "wrong type": (_study_bytes([S_GOOD[0], {**S_GOOD[1], "history": 5}]), 2, "history"),
    "duplicate key": (_study_bytes([S_GOOD[0], S_GOOD[0]]), 2, "key"),
}


@pytest.mark.parametrize("case", list(STUDY_CASES))
def test_bad_study_file_names_file_and_line_and_writes_nothing(case, tmp_path):
    data, line, says = STUDY_CASES[case]
    path = tmp_path / "study.jsonl"
    path.write_bytes(data)
    _refused(["import_study", str(path), "--slug", "bad", "--baseline", BASELINE, "--challenger", CHALLENGER],
             path=path, line=line, says=says)
    assert not Study.objects.filter(slug="bad").exists()


def test_bad_lines_added_to_an_existing_study_change_nothing(tmp_path):
    path = tmp_path / "study.jsonl"
    path.write_bytes(_study_bytes(S_GOOD))
    call_command("import_study", str(path), "--slug", "grow", "--baseline", BASELINE, "--challenger", CHALLENGER,
                 stdout=StringIO())
    more = study_lines(4, tag="good")  # the first two are the same items; two are new
    path.write_bytes(_study_bytes(more) + b'{"key": "broken", "responses": ')
    _refused(["import_study", str(path), "--slug", "grow", "--baseline", BASELINE, "--challenger", CHALLENGER],
             path=path, line=5, says="JSON")
    assert Study.objects.get(slug="grow").items.count() == 2


# --------------------------------------------------------------------------- vote files

@pytest.fixture
def vote_study(tmp_path):
    study, _ = services.study_import_jsonl(path=jsonl_write(tmp_path / "v.jsonl", study_lines(3, tag="v")), slug="votes",
                                           baseline=BASELINE, challenger=CHALLENGER)
    return study


def _votes(rows: list[list[str]], header=("item_key", "rater", "rater_kind", "question", "choice", "confidence")) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


V_GOOD = [["secretkey-v-000", "alice", "human", "q1", "baseline", "4"], ["secretkey-v-001", "alice", "human", "q1", "similar", "3"]]
VOTE_CASES = {
    "truncated": (_votes(V_GOOD).encode() + b"secretkey-v-002,alice,hum", 4, "column"),
    "latin-1": (_votes(V_GOOD + [["secretkey-v-002", "Jos\xe9", "human", "q1", "similar", "3"]]).encode("latin-1"), 4, "UTF-8"),
    "utf-16": (_votes(V_GOOD).encode("utf-16"), 1, "UTF-8"),
    "missing column": (_votes([r[:5] for r in V_GOOD], header=("item_key", "rater", "rater_kind", "question", "choice")).encode(),
                       1, "confidence"),
    "very long line": (_votes(V_GOOD + [["secretkey-v-002", "a" * FIVE_MB, "human", "q1", "similar", "3"]]).encode(), 4, "rater|long|field"),
    "wrong type: confidence": (_votes(V_GOOD + [["secretkey-v-002", "alice", "human", "q1", "similar", "high"]]).encode(), 4, "confidence"),
    "wrong type: choice": (_votes(V_GOOD + [["secretkey-v-002", "alice", "human", "q1", "A", "3"]]).encode(), 4, "choice"),
    "unknown item": (_votes(V_GOOD + [["no-such-item", "alice", "human", "q1", "similar", "3"]]).encode(), 4, "item"),
}


@pytest.mark.parametrize(
    "case",
    list(VOTE_CASES),
)
def test_bad_votes_file_names_file_and_line_and_writes_nothing(case, vote_study, tmp_path):
    data, line, says = VOTE_CASES[case]
    path = tmp_path / "votes.csv"
    path.write_bytes(data)
    _refused(["import_votes", vote_study.slug, str(path)], path=path, line=line, says=says)


def test_good_votes_file_is_imported_once(vote_study, tmp_path):
    """The same good rows the bad files start with do import: the failures above are the bad line's."""
    path = tmp_path / "votes.csv"
    path.write_text(_votes(V_GOOD), encoding="utf-8")
    out = StringIO()
    call_command("import_votes", vote_study.slug, str(path), stdout=out)
    assert json.loads(out.getvalue()) == {"study": "votes", "added": 2, "changed": 0, "unchanged": 0}
    assert Rating.objects.filter(item__study=vote_study).count() == 2


# --------------------------------------------------------------------------- oversized bodies

def _big_study_body(total_bytes: int) -> str:
    """A study that would be valid if accepted: its size is the only thing wrong with it."""
    per = 200_000
    items = [
        {**row, "responses": {BASELINE: "b" * per, CHALLENGER: "c" * per}}
        for row in study_lines(total_bytes // (2 * per) + 1, tag="big")
    ]
    return json.dumps({"slug": "big", "baseline_name": BASELINE, "challenger_name": CHALLENGER, "items": items})


def test_oversized_api_body_is_refused_and_stores_nothing(world):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = _big_study_body(limit + 1024)
    assert len(body) > limit
    staff = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=world.staff).key}")
    # The same study, small, is accepted: only the size decides.
    small = json.loads(body)
    small["slug"], small["items"] = "small", small["items"][:1]
    assert staff.post("/api/staff/studies/", data=json.dumps(small), content_type="application/json").status_code == 201
    before = _counts()
    r = staff.post("/api/staff/studies/", data=body, content_type="application/json")
    assert r.status_code in (400, 413), f"a {len(body):,}-byte body got {r.status_code}"
    assert _counts() == before and not Study.objects.filter(slug="big").exists()


def test_oversized_rating_and_token_bodies_are_refused(world):
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    answers = [{"question": q, "choice": "A", "confidence": 4} for q in QKEYS]
    padded = json.dumps({"answers": answers, "padding": "x" * (limit + 1024)})
    ann = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=world.ann_x).key}")
    before = _counts()
    r = ann.post(f"/api/studies/{world.study_x.slug}/items/{world.item_x.public_id}/ratings/", data=padded,
                 content_type="application/json")
    assert r.status_code in (400, 413), f"an oversized rating body got {r.status_code}"
    assert _counts() == before
    # The token endpoint is open to anyone: the cap matters most there.
    r = Client().post("/api/token/", data=json.dumps({"username": "ann-x", "password": "p" * (limit + 1024)}),
                      content_type="application/json")
    assert r.status_code in (400, 413), f"an oversized token body got {r.status_code}"


def test_oversized_form_post_is_refused(world):
    client = Client()
    client.force_login(world.staff)
    version = world.study_x.instructions_version
    r = client.post(f"/studies/{world.study_x.slug}/manage/instructions/",
                    data={"instructions": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1024)})
    assert r.status_code in (400, 413)
    world.study_x.refresh_from_db()
    assert world.study_x.instructions_version == version


# --------------------------------------------------------------------------- append-only ratings

def test_changed_answers_keep_every_version_and_reports_use_the_latest(db, tmp_path):
    """Three raters answer "Similar"; two of them change q1 to the challenger before moving on, one after."""
    study, _ = services.study_import_jsonl(path=jsonl_write(tmp_path / "a.jsonl", study_lines(2, tag="app")),
                                           slug="append", baseline=BASELINE, challenger=CHALLENGER, overlap=3)
    clients = {}
    for name in ("r1", "r2", "r3"):
        user = services.annotator_add(username=name, password="pw-12345678", study=study)
        clients[name] = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    url = ""

    def submit(name: str, q1: str):
        body = {"answers": [{"question": q, "choice": q1 if q == "q1" else "S", "confidence": 4} for q in QKEYS]}
        return clients[name].post(url, data=json.dumps(body), content_type="application/json")

    sides, got = {}, set()
    for name, c in clients.items():
        payload = c.post(f"/api/studies/{study.slug}/next/").json()
        got.add(payload["item"])
        assert len(got) == 1, "the three raters should be given the same (first) item"
        item = Item.objects.get(public_id=payload["item"])
        url = f"/api/studies/{study.slug}/items/{item.public_id}/ratings/"
        sides[name] = "A" if payload["response_a"] == item.challenger_response else "B"  # the challenger's letter
        assert submit(name, "S").status_code == 201

    def report_q1() -> dict:
        out = StringIO()
        call_command("agreement_report", study.slug, "--format", "json", stdout=out)
        return json.loads(out.getvalue())

    def exported() -> list[dict]:
        out = StringIO()
        call_command("export_votes", study.slug, stdout=out)
        return list(csv.DictReader(io.StringIO(out.getvalue())))

    first = report_q1()
    assert [r["choice"] for r in exported() if r["question"] == "q1"] == ["similar"] * 3
    for name in ("r1", "r2"):
        r = submit(name, sides[name])
        assert r.status_code == 201 and r.json()["stored"] == 1  # only q1 changed: one new row
        assert submit(name, sides[name]).status_code == 200  # the same again stores nothing
    rows = Rating.objects.filter(item=item, rater="r1", question="q1").order_by("created_at", "pk")
    assert [(r.choice, r.is_current) for r in rows] == [("similar", False), ("challenger", True)]
    assert rows[0].created_at <= rows[1].created_at
    assert Rating.objects.filter(item=item).count() == 3 * 4 + 2
    assert sorted(r["choice"] for r in exported() if r["question"] == "q1") == ["challenger", "challenger", "similar"]
    after = report_q1()
    assert after != first
    assert "challenger" in json.dumps(after)
    # After moving on, the earlier item can still be changed while the study is open (issue 21):
    # the change is appended and the export uses it.
    assert clients["r3"].post(f"/api/studies/{study.slug}/next/").status_code == 200
    count = Rating.objects.count()
    r = submit("r3", sides["r3"])
    assert r.status_code == 201 and Rating.objects.count() == count + 1
    assert sorted(r["choice"] for r in exported() if r["question"] == "q1") == ["challenger"] * 3


# --------------------------------------------------------------------------- unreadable bodies (issue 17)

UNREADABLE = {
    "JSON nested 100,000 deep": ("application/json", b"[" * 100_000 + b"]" * 100_000),
    "object nested 50,000 deep": ("application/json", b'{"answers":' * 50_000 + b"1" + b"}" * 50_000),
    "broken JSON": ("application/json", b'{"answers": [}'),
    "NaN": ("application/json", b'{"answers": NaN}'),
    "Latin-1 JSON": ("application/json", '{"username": "é"}'.encode("latin-1")),
    "integer of 5,000 digits": ("application/json", b'{"answers": [{"confidence": ' + b"9" * 5000 + b"}]}"),
    "multipart without its boundary": ("multipart/form-data; boundary=xyz", b"--xyz\r\ngarbage"),
    "plain text": ("text/plain", b"hello"),
    "XML": ("application/xml", b"<answers/>"),
}


def test_request_bodies_the_parsers_cannot_read_are_4xx_with_a_reason(world):
    """Every POST/PATCH route of the API, every unreadable body: a 4xx with a detail, never a 500."""
    s, item = world.study_x.slug, world.item_x.public_id
    staff = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=world.staff)[0].key}")
    ann = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=world.ann_x)[0].key}")
    routes = [(staff, "POST", "/api/staff/studies/"), (staff, "PATCH", f"/api/staff/studies/{s}/"),
              (staff, "POST", f"/api/staff/studies/{s}/annotators/"), (Client(), "POST", "/api/token/"),
              (ann, "POST", f"/api/studies/{s}/items/{item}/ratings/")]
    problems = []
    for client, method, url in routes:
        for what, (content_type, body) in UNREADABLE.items():
            r = client.generic(method, url, data=body, content_type=content_type)
            # Django reads a multipart body without its parts as empty: a PATCH of nothing may be a 200.
            empty_ok = what.startswith("multipart") and r.status_code == 200 and method == "PATCH"
            if not empty_ok and (not 400 <= r.status_code < 500 or not r.json().get("detail")):
                problems.append(f"{method} {url} with {what}: {r.status_code} {r.content[:200]!r}")
    assert not problems, "\n".join(problems)
    r = ann.generic("POST", f"/api/studies/{s}/items/{item}/ratings/", data=UNREADABLE["JSON nested 100,000 deep"][1],
                    content_type="application/json")
    assert r.status_code == 400 and "nested too deeply" in r.json()["detail"]
    assert not Rating.objects.filter(item=world.item_x).exists()


def test_an_answer_sent_twice_in_the_html_form_is_a_400_like_the_api(world):
    s, item = world.study_x.slug, world.item_x.public_id
    web = Client()
    web.force_login(world.ann_x)
    fields = [(f"{q}-choice", "A") for q in QKEYS] + [(f"{q}-confidence", "4") for q in QKEYS]
    body = "&".join(f"{k}={v}" for k, v in fields + [("q1-choice", "B")])
    for extra in ({}, {"HTTP_HX_REQUEST": "true"}):
        r = web.post(f"/studies/{s}/items/{item}/", data=body, content_type="application/x-www-form-urlencoded", **extra)
        assert r.status_code == 400, r.status_code
        assert "sent more than once: q1-choice" in r.content.decode()
    assert not Rating.objects.filter(item=world.item_x).exists()
    # The API says the same about the same mistake.
    api = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=world.ann_x)[0].key}")
    answers = [{"question": q, "choice": "A", "confidence": 4} for q in QKEYS] + [{"question": "q1", "choice": "B", "confidence": 4}]
    r = api.post(f"/api/studies/{s}/items/{item}/ratings/", data=json.dumps({"answers": answers}), content_type="application/json")
    assert r.status_code == 400 and "answered twice" in r.json()["detail"]
    # The staff forms too.
    staff = Client()
    staff.force_login(world.staff)
    r = staff.post(f"/studies/{s}/manage/annotators/", data="username=a-new-one&username=ann-y&password=",
                   content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400 and "sent more than once: username" in r.content.decode()
    assert not User.objects.filter(username="a-new-one").exists()
    # Sent once, the form is stored.
    good = "&".join(f"{k}={v}" for k, v in fields)
    assert web.post(f"/studies/{s}/items/{item}/", data=good, content_type="application/x-www-form-urlencoded").status_code == 302
    assert Rating.objects.filter(item=world.item_x, rater="ann-x").count() == 4
