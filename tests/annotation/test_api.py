"""The annotation API over HTTP (DRF test client): tokens, access, blinded payloads, field errors, staff routes."""
import json
import time

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Assignment, Rating, Study
from tests.factories import QKEYS, annotators_create, toy_study

pytestmark = pytest.mark.django_db


def answers(choice="A", confidence=3, **override):
    return {"answers": [{"question": q, "choice": override.get(q, choice), "confidence": confidence} for q in QKEYS]}


def token_client(username: str, password: str = "pw-12345678") -> APIClient:
    anon = APIClient()
    response = anon.post("/api/token/", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    return client


@pytest.fixture
def study(tmp_path):
    return toy_study(tmp_path, n=3, overlap=2, slug="mine")


@pytest.fixture
def other_study(tmp_path):
    return toy_study(tmp_path, n=2, overlap=1, slug="theirs")


def test_token_for_a_good_password_and_400_for_a_bad_one(study):
    annotators_create(study, 1)
    assert token_client("ann0")
    response = APIClient().post("/api/token/", {"username": "ann0", "password": "wrong"}, format="json")
    assert response.status_code == 400 and "password" in response.json()["errors"]
    assert "token" not in response.json()


def test_the_token_endpoint_allows_10_logins_a_minute_per_address_and_no_other_route_is_limited(study, settings,
                                                                                                   monkeypatch):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "10/minute"}}
    annotators_create(study, 1)
    good, bad = {"username": "ann0", "password": "pw-12345678"}, {"username": "ann0", "password": "wrong"}
    anon = APIClient()
    codes = [anon.post("/api/token/", bad if i % 2 else good, format="json").status_code for i in range(10)]
    assert codes == [200, 400] * 5  # good and bad logins count alike
    for body in (good, bad):
        r = anon.post("/api/token/", body, format="json")
        assert r.status_code == 429 and r.json()["detail"].startswith(
            "Too many token requests from this address (at most 10/minute). Try again in ")
        assert 0 < int(r["Retry-After"]) <= 60 and "token" not in r.json()
    # A forged X-Forwarded-For does not make a new address (NUM_PROXIES 0); another address does.
    assert anon.post("/api/token/", good, format="json", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 429
    assert APIClient(REMOTE_ADDR="198.51.100.7").post("/api/token/", good, format="json").status_code == 200
    # Token-authenticated routes are not limited: far more than 10 requests a minute from the same address.
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user__username='ann0').key}")
    assert {client.get("/api/studies/").status_code for _ in range(15)} == {200}
    assert {client.get("/api/studies/mine/").status_code for _ in range(5)} == {200}
    # A minute later the address may log in again.
    from annotation.api import TokenRateThrottle

    later = time.time() + 61
    monkeypatch.setattr(TokenRateThrottle, "timer", lambda self: later)
    assert anon.post("/api/token/", good, format="json").status_code == 200


def test_anonymous_requests_get_401(study):
    anon = APIClient()
    assert anon.get("/api/studies/").status_code == 401
    assert anon.post("/api/studies/mine/next/").status_code == 401
    assert anon.get("/api/staff/studies/").status_code == 401


def test_an_annotator_rates_items_until_204(study):
    annotators_create(study, 1)
    client = token_client("ann0")
    listed = client.get("/api/studies/").json()
    assert [s["slug"] for s in listed] == ["mine"] and listed[0]["progress"] == {"done": 0, "total": 3}
    seen = []
    while True:
        response = client.post("/api/studies/mine/next/")
        if response.status_code == 204:
            break
        assert response.status_code == 200
        payload = response.json()
        assert set(payload) == {"item", "persona", "history", "generic_response", "response_a", "response_b", "questions",
                                "progress"}
        assert [q["key"] for q in payload["questions"]] == QKEYS and payload["history"][0]["role"] == "user"
        # Asking again before answering returns the same item (a reload).
        assert client.post("/api/studies/mine/next/").json()["item"] == payload["item"]
        response = client.post(f"/api/studies/mine/items/{payload['item']}/ratings/", answers(), format="json")
        assert response.status_code == 201, response.content
        assert response.json()["stored"] == 4 and response.json()["progress"]["done"] == len(seen) + 1
        seen.append(payload["item"])
    assert len(set(seen)) == 3
    assert Rating.objects.filter(rater="ann0", is_current=True).count() == 12


def test_a_bad_answer_gets_400_naming_the_field_and_nothing_is_stored(study):
    annotators_create(study, 1)
    client = token_client("ann0")
    item = client.post("/api/studies/mine/next/").json()["item"]
    url = f"/api/studies/mine/items/{item}/ratings/"
    body = answers()
    body["answers"][2]["choice"] = "C"
    body["answers"][1]["confidence"] = "very"
    response = client.post(url, body, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"q3", "q2.confidence"} and "q3" in response.json()["detail"]
    body = answers()
    del body["answers"][3]
    assert set(client.post(url, body, format="json").json()["errors"]) == {"q4"}
    assert client.post(url, {"answers": "A"}, format="json").json()["errors"] == {
        "answers": 'send {"answers": [{"question", "choice", "confidence"}, ...]}'
    }
    assert client.post(url, "not json", content_type="application/json").status_code == 400
    assert not Rating.objects.exists()
    assert Assignment.objects.get().status == "reserved"


def test_a_repeated_submit_stores_nothing_twice(study):
    annotators_create(study, 1)
    client = token_client("ann0")
    item = client.post("/api/studies/mine/next/").json()["item"]
    url = f"/api/studies/mine/items/{item}/ratings/"
    assert client.post(url, answers(), format="json").status_code == 201
    again = client.post(url, answers(), format="json")
    assert again.status_code == 200 and again.json()["stored"] == 0
    assert Rating.objects.count() == 4
    changed = client.post(url, answers(q1="B"), format="json")
    assert changed.status_code == 201 and changed.json()["stored"] == 1
    assert Rating.objects.count() == 5 and Rating.objects.filter(is_current=True).count() == 4


def test_annotators_cannot_reach_other_studies_or_other_peoples_items(study, other_study):
    annotators_create(study, 2)
    annotators_create(other_study, 1, prefix="other")
    mine, neighbour, outsider = token_client("ann0"), token_client("ann1"), token_client("other0")
    item = mine.post("/api/studies/mine/next/").json()["item"]
    for client in (outsider,):
        assert client.get("/api/studies/mine/").status_code == 404
        assert client.post("/api/studies/mine/next/").status_code == 404
        assert client.post(f"/api/studies/mine/items/{item}/ratings/", answers(), format="json").status_code == 404
        assert client.post(f"/api/studies/theirs/items/{item}/ratings/", answers(), format="json").status_code == 404
    # A fellow annotator of the same study cannot answer for an item reserved by someone else.
    assert neighbour.post(f"/api/studies/mine/items/{item}/ratings/", answers(), format="json").status_code == 404
    assert mine.post("/api/studies/nonexistent/next/").status_code == 404
    assert [s["slug"] for s in outsider.get("/api/studies/").json()] == ["theirs"]
    for url in ("/api/staff/studies/", "/api/staff/studies/mine/", "/api/staff/studies/mine/items/",
                "/api/staff/studies/mine/ratings/", "/api/staff/studies/mine/quality/", "/api/staff/studies/mine/annotators/",
                "/api/staff/studies/mine/author-tells/"):
        assert mine.get(url).status_code == 403, url
    assert not Rating.objects.exists()


def test_payloads_reveal_no_system_name_key_or_side(study):
    annotators_create(study, 1)
    client = token_client("ann0")
    texts = []
    while (r := client.post("/api/studies/mine/next/")).status_code == 200:
        texts.append(r.content.decode() + json.dumps(dict(r.headers)))
        texts.append(client.post(f"/api/studies/mine/items/{r.json()['item']}/ratings/", answers(), format="json").content.decode())
    texts.append(client.get("/api/studies/").content.decode())
    blob = "\n".join(texts)
    for secret in ("PreSFT", "PostGRAG", "spc/test/", "baseline", "challenger", "Hist"):
        assert secret not in blob, secret


def test_session_requests_need_a_csrf_token(study):
    annotators_create(study, 1)
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="ann0", password="pw-12345678")
    assert client.get("/api/studies/").status_code == 200
    response = client.post("/api/studies/mine/next/")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


def test_staff_create_edit_list_export_and_check_quality(study):
    staff = User.objects.create_user("boss", password="pw-12345678", is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    body = {
        "slug": "api-study", "baseline_name": "sysA", "challenger_name": "sysB", "overlap": 1,
        "items": [{"key": "k1", "persona": "p", "history": "User: hi", "responses": {"sysA": "a", "sysB": "b"}}],
    }
    created = client.post("/api/staff/studies/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["item_count"] == 1 and len(created.json()["questions"]) == 4
    bad = dict(body, slug="api-bad", items=[{"key": "k1", "responses": {"sysA": "a"}}])
    response = client.post("/api/staff/studies/", bad, format="json")
    assert response.status_code == 400 and "items[0]" in response.json()["detail"]
    assert not Study.objects.filter(slug="api-bad").exists()
    response = client.post("/api/staff/studies/", dict(body, slug="api-zero", overlap=0), format="json")
    assert response.status_code == 400 and "greater than or equal to 1" in response.json()["errors"]["overlap"][0]
    assert not Study.objects.filter(slug="api-zero").exists()
    patched = client.patch("/api/staff/studies/api-study/", {"instructions": "**Read**", "questions": [
        {"key": "q1", "label": "Fluency", "text": "Which is more fluent?"}]}, format="json")
    assert patched.status_code == 200 and patched.json()["instructions_version"] == 2
    assert [q["key"] for q in patched.json()["questions"]] == ["q1"]
    added = client.post("/api/staff/studies/api-study/annotators/", {"username": "newbie", "password": "pw-12345678"}, format="json")
    assert added.status_code == 201
    newbie = token_client("newbie")
    item = newbie.post("/api/studies/api-study/next/").json()
    assert [q["text"] for q in item["questions"]] == ["Which is more fluent?"]
    r = newbie.post(f"/api/studies/api-study/items/{item['item']}/ratings/",
                    {"answers": [{"question": "q1", "choice": "S", "confidence": 5}]}, format="json")
    assert r.status_code == 201
    states = client.get("/api/staff/studies/api-study/items/").json()
    assert [(s["key"], s["completed"], s["state"]) for s in states] == [("k1", 1, "done")]
    assert client.get("/api/staff/studies/api-study/ratings/").json() == [
        {"item_key": "k1", "rater": "newbie", "rater_kind": "human", "question": "q1", "choice": "similar", "confidence": 5,
         "comment": ""}
    ]
    (quality,) = client.get("/api/staff/studies/api-study/quality/").json()
    assert quality["annotator"] == "newbie" and quality["items"] == 1
    assert client.get("/api/staff/studies/api-study/author-tells/").json() == []
    telling = dict(body, slug="api-tells", items=[{"key": "k", "responses": {"sysA": "As an AI, I cannot.", "sysB": "b"}}])
    assert client.post("/api/staff/studies/", telling, format="json").status_code == 201
    assert client.get("/api/staff/studies/api-tells/author-tells/").json() == [
        {"item": "k", "response": "baseline", "match": "As an AI"}
    ]


def test_the_openapi_schema_is_valid_and_lists_the_routes(client):
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    for route in ("/api/token/", "/api/studies/", "/api/studies/{slug}/next/", "/api/studies/{slug}/items/{item}/ratings/",
                  "/api/staff/studies/{slug}/ratings/"):
        assert route in schema["paths"], route
    response = client.get("/api/schema/")
    assert response.status_code == 200 and b"/api/studies/{slug}/next/" in response.content
