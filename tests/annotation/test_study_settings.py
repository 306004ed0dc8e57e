"""Security review, findings 6 and 7: a study's numeric settings have upper bounds stated once (on
the model) and every way of setting a study's title or slug refuses words that unblind it."""
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Study
from tests.annotation.test_api import token_client
from tests.factories import annotators_create, toy_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_api():
    client = APIClient()
    client.force_authenticate(User.objects.create_user("boss", password="pw-12345678", is_staff=True))
    return client


@pytest.mark.parametrize("field, value", [
    ("reservation_minutes", 10**12), ("reservation_minutes", 10081), ("reservation_minutes", 0),
    ("overlap", 2**40), ("overlap", 51), ("overlap", 0),
    ("too_fast_seconds", 10**15), ("too_fast_seconds", 3601),
    ("trap_rate", 1.0), ("trap_rate", -0.1), ("min_confidence", 6),
])
def test_an_out_of_range_setting_is_a_400_naming_the_field_and_changes_nothing(tmp_path, staff_api, field, value):
    study = toy_study(tmp_path, n=2, overlap=1, slug="bounded")
    before = getattr(study, field)
    response = staff_api.patch("/api/staff/studies/bounded/", {field: value}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    study.refresh_from_db()
    assert getattr(study, field) == before
    created = staff_api.post("/api/staff/studies/", {"slug": "fresh", "baseline_name": "a", "challenger_name": "b",
                                                     field: value}, format="json")
    assert created.status_code == 400 and field in created.json()["errors"]
    assert not Study.objects.filter(slug="fresh").exists()


def test_the_largest_settings_are_accepted_and_next_still_answers(tmp_path, staff_api):
    study = toy_study(tmp_path, n=2, overlap=1, slug="bounded")
    response = staff_api.patch("/api/staff/studies/bounded/", {"reservation_minutes": 10080, "overlap": 50,
                                                               "too_fast_seconds": 3600, "trap_rate": 0.99}, format="json")
    assert response.status_code == 200, response.content
    annotators_create(study, 1)
    assert token_client("ann0").post("/api/studies/bounded/next/").status_code == 200


def test_a_study_stored_before_the_bounds_still_hands_out_items(tmp_path):
    study = toy_study(tmp_path, n=2, overlap=1, slug="old")
    from django.db import connection

    # A row from before the migration: on SQLite any integer fits (10**12 minutes overflows a datetime);
    # PostgreSQL's integer column stops at 2**31 - 1, which the service must also handle.
    huge = 10**12 if connection.vendor == "sqlite" else 2**31 - 1
    Study.objects.filter(pk=study.pk).update(reservation_minutes=huge)
    annotators_create(study, 1)
    assert token_client("ann0").post("/api/studies/old/next/").status_code == 200


def test_the_services_check_the_same_bounds_as_the_model(tmp_path):
    study = toy_study(tmp_path, n=2, overlap=1, slug="bounded")
    for field, value in [("reservation_minutes", 10**12), ("overlap", 2**40), ("too_fast_seconds", 10**15),
                         ("trap_rate", 1), ("overlap", True)]:
        with pytest.raises(services.StudyFieldError) as caught:
            services.study_update(study=study, **{field: value})
        assert caught.value.field == field and field in str(caught.value)
        with pytest.raises(services.StudyFieldError):
            services.study_create(slug="svc", baseline_name="a", challenger_name="b", **{field: value})
    assert not Study.objects.filter(slug="svc").exists()


# --- finding 7: titles and slugs name no system, model or method, however they are set ---

BODY = {"baseline_name": "presft-hist-spc", "challenger_name": "vanilla-chat", "overlap": 1,
        "items": [{"key": "k1", "persona": "p", "history": "User: hi",
                   "responses": {"presft-hist-spc": "a", "vanilla-chat": "b"}}]}


@pytest.mark.parametrize("field, value, word", [
    ("slug", "postgrag-vs-presft", "postgrag"),  # a method
    ("slug", "vanilla-chat-round-2", "vanilla-chat"),  # the study's own challenger name
    ("title", "presft-hist-spc vs vanilla-chat (PostGRAG)", "presft-hist-spc"),
    ("title", "Round 2 with Llama 3", "Llama"),  # a model name
])
def test_creating_a_study_whose_slug_or_title_names_a_system_is_a_400(staff_api, field, value, word):
    body = {**BODY, "slug": "neutral-1", field: value}
    response = staff_api.post("/api/staff/studies/", body, format="json")
    assert response.status_code == 400, response.content
    message = response.json()["errors"][field]
    assert word.lower() in message.lower() and "annotators would see" in message
    assert Study.objects.count() == 0
    assert staff_api.post("/api/staff/studies/", dict(BODY, slug="neutral-1", title="Round 2"),
                          format="json").status_code == 201


def test_renaming_a_study_to_a_system_name_is_a_400_and_a_neutral_title_is_kept(tmp_path, staff_api):
    study = toy_study(tmp_path, n=2, overlap=1, slug="round")  # baseline PreSFT(Hist), challenger PostGRAG
    for title, word in [("PreSFT(Hist) vs PostGRAG", "PreSFT(Hist)"), ("the grag study", "grag"),
                        ("presft_tst again", "presft_tst")]:
        response = staff_api.patch("/api/staff/studies/round/", {"title": title}, format="json")
        assert response.status_code == 400, (title, response.content)
        assert word.lower() in response.json()["errors"]["title"].lower()
    study.refresh_from_db()
    assert study.title == "round"
    response = staff_api.patch("/api/staff/studies/round/", {"title": "Round two"}, format="json")
    assert response.status_code == 200 and response.json()["title"] == "Round two"


def test_the_services_refuse_the_same_names(tmp_path):
    study = toy_study(tmp_path, n=2, overlap=1, slug="round")
    with pytest.raises(services.StudyFieldError) as caught:
        services.study_update(study=study, title="PostGRAG wins?")
    assert caught.value.field == "title"
    with pytest.raises(services.StudyFieldError) as caught:
        services.study_create(slug="sysa-vs-sysb", baseline_name="sysA", challenger_name="sysB")
    assert caught.value.field == "slug" and "sysa" in str(caught.value)
