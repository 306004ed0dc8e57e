"""The annotator's workflow in the API (issue 21): earlier items, change, skip, flag, comments, staff flags."""
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from annotation.models import COMMENT_MAX_CHARS, Flag, Rating
from annotation.services import study_update
from tests.annotation.test_api import answers, token_client
from tests.factories import annotators_create, toy_study

pytestmark = pytest.mark.django_db
SECRETS = ("PreSFT", "PostGRAG", "baseline", "challenger", "base says", "spc/test")


@pytest.fixture
def study(tmp_path):
    return toy_study(tmp_path, n=3, overlap=1, slug="mine")


def _no_secret(body: str) -> None:
    for secret in SECRETS[:4]:
        assert secret.lower() not in body.lower(), secret


def test_an_earlier_item_is_fetched_with_its_answers_and_changed_with_a_comment(study):
    annotators_create(study, 1)
    client = token_client("ann0")
    first = client.post("/api/studies/mine/next/").json()["item"]
    url = f"/api/studies/mine/items/{first}/ratings/"
    assert client.post(url, {**answers("A", 4), "comment": "=1+1 <i>hm</i>"}, format="json").status_code == 201
    client.post("/api/studies/mine/next/")  # moves on
    detail = client.get(f"/api/studies/mine/items/{first}/")
    assert detail.status_code == 200
    body = detail.json()
    assert body["status"] == "completed" and body["editable"] and body["comment"] == "=1+1 <i>hm</i>"
    assert [(a["question"], a["choice"], a["confidence"]) for a in body["answers"]] == [
        (q, "A", 4) for q in ("q1", "q2", "q3", "q4")]
    _no_secret(detail.content.decode())
    # Changing it after moving on: one new row for q1; no comment sent keeps the comment.
    changed = client.post(url, answers("A", 4, q1="S"), format="json")
    assert changed.status_code == 201 and changed.json()["stored"] == 1 and changed.json()["comment"] == "=1+1 <i>hm</i>"
    cleared = client.post(url, {**answers("A", 4, q1="S"), "comment": ""}, format="json")
    assert cleared.status_code == 201 and cleared.json()["comment"] == ""
    too_long = client.post(url, {**answers("A", 4), "comment": "c" * (COMMENT_MAX_CHARS + 1)}, format="json")
    assert too_long.status_code == 400 and "comment" in too_long.json()["errors"]
    assert client.post(url, {**answers(), "comment": 7}, format="json").status_code == 400
    listed = client.get("/api/studies/mine/items/").json()
    assert [(r["item"], r["status"], r["number"]) for r in listed] == [(first, "completed", 1)]


def test_skip_frees_the_item_and_refuses_bad_reasons_rated_items_and_other_peoples_items(study):
    annotators_create(study, 2)
    me, other = token_client("ann0"), token_client("ann1")
    item = me.post("/api/studies/mine/next/").json()["item"]
    skip = f"/api/studies/mine/items/{item}/skip/"
    for body in ({}, {"reason": "meh"}, {"reason": ["broken"]}, []):
        r = me.post(skip, body, format="json")
        assert r.status_code == 400 and "reason" in r.json()["errors"], body
    assert other.post(skip, {"reason": "broken"}, format="json").status_code == 404
    r = me.post(skip, {"reason": "broken"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "skipped" and r.json()["progress"] == {"done": 0, "total": 2}
    assert other.post("/api/studies/mine/next/").json()["item"] == item  # the slot is free
    assert me.post(f"/api/studies/mine/items/{item}/ratings/", answers(), format="json").status_code == 409
    nxt = me.post("/api/studies/mine/next/").json()["item"]
    assert nxt != item
    me.post(f"/api/studies/mine/items/{nxt}/ratings/", answers(), format="json")
    r = me.post(f"/api/studies/mine/items/{nxt}/skip/", {"reason": "broken"}, format="json")
    assert r.status_code == 409 and "already answered" in r.json()["detail"]
    assert me.get(f"/api/studies/mine/items/{item}/").json()["editable"] is False


def test_flags_are_validated_and_staff_list_and_resolve_them(study):
    annotators_create(study, 2)
    me, other = token_client("ann0"), token_client("ann1")
    item = me.post("/api/studies/mine/next/").json()["item"]
    flag = f"/api/studies/mine/items/{item}/flag/"
    for body in ({}, {"comment": ""}, {"comment": "x" * (COMMENT_MAX_CHARS + 1)}, {"comment": ["a"]}, "text"):
        r = me.post(flag, body, format="json")
        assert r.status_code == 400 and "comment" in r.json()["errors"], body
    assert other.post(flag, {"comment": "not mine"}, format="json").status_code == 404
    r = me.post(flag, {"comment": "Response B is cut off mid-sentence"}, format="json")
    assert r.status_code == 201 and r.json() == {"item": item, "comment": "Response B is cut off mid-sentence"}
    _no_secret(r.content.decode())
    assert me.get("/api/staff/studies/mine/flags/").status_code == 403
    staff = APIClient()
    staff.force_authenticate(User.objects.create_user("boss", password="pw-12345678", is_staff=True))
    (row,) = staff.get("/api/staff/studies/mine/flags/").json()
    assert row["annotator"] == "ann0" and row["item"] == item and row["resolved_at"] is None
    assert staff.get("/api/staff/studies/mine/flags/?include_resolved=maybe").status_code == 400
    assert staff.post("/api/staff/studies/mine/flags/999999/resolve/").status_code == 404
    resolved = staff.post(f"/api/staff/studies/mine/flags/{row['id']}/resolve/").json()
    assert resolved["resolved_by"] == "boss" and resolved["resolved_at"]
    assert staff.get("/api/staff/studies/mine/flags/").json() == []
    assert len(staff.get("/api/staff/studies/mine/flags/?include_resolved=true").json()) == 1


def test_a_closed_study_answers_409_to_changes_skips_and_flags(study):
    annotators_create(study, 1)
    me = token_client("ann0")
    item = me.post("/api/studies/mine/next/").json()["item"]
    me.post(f"/api/studies/mine/items/{item}/ratings/", answers(), format="json")
    second = me.post("/api/studies/mine/next/").json()["item"]
    study_update(study=study, is_open=False)
    count = Rating.objects.count()
    for url, body in ((f"/api/studies/mine/items/{item}/ratings/", answers("B")),
                      (f"/api/studies/mine/items/{second}/skip/", {"reason": "broken"}),
                      (f"/api/studies/mine/items/{item}/flag/", {"comment": "typo"})):
        r = me.post(url, body, format="json")
        assert r.status_code == 409 and "closed" in r.json()["detail"], url
    assert Rating.objects.count() == count and not Flag.objects.exists()
    assert me.get(f"/api/studies/mine/items/{item}/").json()["editable"] is False


def test_instructions_confirmed_through_the_api_count_for_the_pages(study, client):
    (user,) = annotators_create(study, 1)
    me = token_client("ann0")
    assert me.post("/api/studies/mine/instructions/").json() == {"version": 1}
    client.force_login(user)
    assert client.get("/studies/mine/annotate/").status_code == 200
