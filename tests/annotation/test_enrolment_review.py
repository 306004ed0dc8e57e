"""The attacker review of crowd studies (issue 21), on the real database and views: each finding as a kind.

Skip-farming and arriving while others hold every item (no completion code for no work, a wait
page instead of the end), resuming by Prolific id (usable link, same SESSION_ID), participants
no longer active (no writes), flag spam (one open flag per annotator and item), the time limit
and the instructions in onboarding, repeated Prolific parameters and invisible-only text.
"""
import csv
import io
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from annotation import services
from annotation.enrolment_models import Participant
from annotation.models import Assignment, Flag, Rating
from annotation.services.enrolment import display_name_clean, participant_enrol, participant_leave
from annotation.services.links import EnrolmentRefused, crowd_settings_update, link_create, link_set_active
from annotation.services.onboarding import onboarding_answer, onboarding_next
from tests.annotation.test_enrolment import PROLIFIC, _onboarding_study
from tests.factories import answer_all, toy_study

pytestmark = pytest.mark.django_db
ANSWERS = {f"q{i}-choice": "A" for i in range(1, 5)} | {f"q{i}-confidence": "4" for i in range(1, 5)}
COMPLETE = "https://app.prolific.com/submissions/complete?cc="


def _prolific_client(study, link, pid="p1", session="s1") -> Client:
    """A browser that joined through ``link`` as Prolific participant ``pid`` and read the instructions."""
    client = Client()
    assert client.post(f"/join/{link.token}/", {"PROLIFIC_PID": pid, "SESSION_ID": session}).status_code == 302
    client.post(f"/studies/{study.slug}/")  # the instructions, read
    return client


def _current_item(client, study) -> str:
    page = client.get(f"/studies/{study.slug}/annotate/").content.decode()
    return page.split('id="rating-form"')[1].split('action="')[1].split('"')[0]


def test_skipping_every_item_earns_no_completion_code_and_staff_see_the_skips(tmp_path, admin_client):
    study = toy_study(tmp_path, n=2, overlap=1)
    crowd_settings_update(study=study, completion_code="DONE1")
    link = link_create(study=study)
    client = _prolific_client(study, link)
    for _ in range(2):
        assert client.post(_current_item(client, study) + "skip/", {"reason": "cannot_judge"}).status_code == 302
    end = client.get(f"/studies/{study.slug}/annotate/", follow=True)
    assert end.redirect_chain[-1][0] == f"/studies/{study.slug}/end/"
    assert end.status_code == 200 and b"no item left for you" in end.content and b"return the study" in end.content
    assert COMPLETE.encode() not in end.content and b"DONE1" not in end.content
    participant = Participant.objects.get()
    assert participant.status == Participant.Status.NO_WORK
    assert client.get(f"/studies/{study.slug}/end/").status_code == 200  # stays: never the completion URL
    rows = list(csv.DictReader(io.StringIO(admin_client.get(
        f"/studies/{study.slug}/manage/participants.csv").content.decode())))
    assert [(r["status"], r["items_done"], r["skipped"]) for r in rows] == [("no_work", "0", "2")]
    (api_row,) = admin_client.get(f"/api/staff/studies/{study.slug}/participants/").json()
    assert (api_row["skipped"], api_row["status"]) == (2, "no_work") and "no_work" in api_row["flags"]


def test_a_participant_who_rated_one_item_and_skipped_the_rest_finishes_with_the_code(tmp_path):
    study = toy_study(tmp_path, n=2, overlap=1)
    crowd_settings_update(study=study, completion_code="DONE1")
    link = link_create(study=study)
    client = _prolific_client(study, link)
    client.post(_current_item(client, study), ANSWERS)
    client.post(_current_item(client, study) + "skip/", {"reason": "broken"})
    assert client.get(f"/studies/{study.slug}/annotate/", follow=False)["Location"] == f"/studies/{study.slug}/end/"
    assert client.get(f"/studies/{study.slug}/end/")["Location"] == COMPLETE + "DONE1"
    assert Participant.objects.get().status == Participant.Status.FINISHED


def test_a_participant_arriving_while_others_hold_every_item_waits_and_is_not_finished(tmp_path):
    study = toy_study(tmp_path, n=1, overlap=1)
    crowd_settings_update(study=study, completion_code="DONE1")
    link = link_create(study=study)
    first = _prolific_client(study, link, pid="p1")
    _current_item(first, study)  # p1 holds the only item
    late = _prolific_client(study, link, pid="p2", session="s2")
    for _ in range(2):  # coming back while it is still held changes nothing
        page = late.get(f"/studies/{study.slug}/annotate/")
        assert page.status_code == 200 and b"being rated right now" in page.content
        assert f"lasts {study.reservation_minutes} minutes".encode() in page.content
        assert COMPLETE.encode() not in page.content
    p2 = Participant.objects.get(prolific_pid="p2")
    assert p2.status == Participant.Status.ACTIVE and p2.ended_at is None
    assert late.get(f"/studies/{study.slug}/end/")["Location"] == f"/studies/{study.slug}/annotate/"  # no code
    # htmx (after a rating or a skip) is sent to the wait page as a page of its own.
    response = late.get(f"/studies/{study.slug}/annotate/", headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == f"/studies/{study.slug}/annotate/"
    # p1's reservation runs out: the item is p2's, who rates it and finishes with the code.
    Assignment.objects.filter(annotator__participant__prolific_pid="p1").update(expires_at=timezone.now())
    late.post(_current_item(late, study), ANSWERS)
    assert late.get(f"/studies/{study.slug}/annotate/")["Location"] == f"/studies/{study.slug}/end/"
    assert late.get(f"/studies/{study.slug}/end/")["Location"] == COMPLETE + "DONE1"


def test_resuming_by_prolific_id_needs_a_usable_link_and_the_same_session(tmp_path):
    study = toy_study(tmp_path, n=3, overlap=1)
    link = link_create(study=study)
    owner = Client()
    assert owner.post(f"/join/{link.token}/", {"PROLIFIC_PID": PROLIFIC["prolific_pid"], "SESSION_ID": "x1"}
                      ).status_code == 302
    participant = Participant.objects.get()
    assert participant.prolific_session_id == "x1"
    # Somebody else who knows the PID, with another (or no) SESSION_ID: 403, not logged in as them.
    for session in ("other", ""):
        thief = Client()
        data = {"PROLIFIC_PID": PROLIFIC["prolific_pid"], "SESSION_ID": session}
        for response in (thief.get(f"/join/{link.token}/", data), thief.post(f"/join/{link.token}/", data)):
            assert response.status_code == 403 and b"another Prolific session" in response.content
        assert thief.get(f"/studies/{study.slug}/annotate/").status_code == 302  # to the login page
        assert "_auth_user_id" not in thief.session
    with pytest.raises(EnrolmentRefused) as exc:
        participant_enrol(token=link.token, prolific={**PROLIFIC, "prolific_session_id": "other"})
    assert exc.value.status == 403
    # The same SESSION_ID from a new browser resumes while the link is usable...
    again = Client()
    response = again.post(f"/join/{link.token}/", {"PROLIFIC_PID": PROLIFIC["prolific_pid"], "SESSION_ID": "x1"})
    assert response.status_code == 302 and int(again.session["_auth_user_id"]) == participant.user_id
    # ...but not through a deactivated link, while the browser already signed in keeps going.
    link_set_active(link=link, is_active=False)
    late = Client()
    data = {"PROLIFIC_PID": PROLIFIC["prolific_pid"], "SESSION_ID": "x1"}
    assert late.get(f"/join/{link.token}/", data).status_code == 410
    assert late.post(f"/join/{link.token}/", data).status_code == 410 and "_auth_user_id" not in late.session
    assert owner.get(f"/join/{link.token}/", data)["Location"] == f"/studies/{study.slug}/annotate/"
    assert Participant.objects.count() == 1


def test_a_participant_no_longer_active_can_change_skip_or_flag_nothing(tmp_path):
    study = toy_study(tmp_path, n=3, overlap=1)
    link = link_create(study=study)
    client = _prolific_client(study, link)
    rated = _current_item(client, study)
    client.post(rated, ANSWERS)
    held = _current_item(client, study)
    participant = Participant.objects.get()
    participant_leave(participant=participant)
    before = list(Rating.objects.order_by("pk").values_list("pk", "is_current", "comment"))
    changed = client.post(rated, {**ANSWERS, "q1-choice": "B", "comment": "changed"})
    assert changed.status_code == 409 and b"you left this study" in changed.content
    for url, data in ((rated + "skip/", {"reason": "broken"}), (held + "skip/", {"reason": "broken"}),
                      (rated + "flag/", {"flag_comment": "spam"})):
        response = client.post(url, data)
        assert response.status_code == 409 and b"you left this study" in response.content, url
    public_id = rated.rstrip("/").rsplit("/", 1)[1]
    api = client.post(f"/api/studies/{study.slug}/items/{public_id}/ratings/", {"answers": [
        {"question": f"q{i}", "choice": "B", "confidence": 3} for i in range(1, 5)]}, content_type="application/json")
    assert api.status_code == 409 and "you left this study" in api.json()["errors"]["participant"]
    for endpoint, body in (("skip", {"reason": "broken"}), ("flag", {"comment": "spam"})):
        response = client.post(f"/api/studies/{study.slug}/items/{public_id}/{endpoint}/", body,
                               content_type="application/json")
        assert response.status_code == 409, endpoint
    assert list(Rating.objects.order_by("pk").values_list("pk", "is_current", "comment")) == before
    assert not Flag.objects.exists()
    assert not Assignment.objects.filter(status=Assignment.Status.SKIPPED).exists()
    with pytest.raises(services.ParticipantInactive):
        services.rating_submit(assignment=Assignment.objects.get(status=Assignment.Status.COMPLETED),
                               answers=answer_all("B"))


def test_one_open_flag_per_annotator_and_item_and_the_manage_page_lists_the_newest_100(tmp_path, admin_client):
    study = toy_study(tmp_path, n=6, overlap=1)
    annotator = services.annotator_add(username="ann", password=None, study=study)
    services.instructions_confirm(study=study, annotator=annotator)
    a = services.assignment_next(study=study, annotator=annotator)
    services.flag_create(study=study, annotator=annotator, public_id=a.item.public_id, comment="broken")
    with pytest.raises(services.ItemConflict, match="already reported"):
        services.flag_create(study=study, annotator=annotator, public_id=a.item.public_id, comment="again")
    client = Client()
    client.force_login(annotator)
    url = f"/studies/{study.slug}/items/{a.item.public_id}/flag/"
    response = client.post(url, {"flag_comment": "again"})
    assert response.status_code == 409 and b"already reported this item" in response.content
    api = client.post(f"/api/studies/{study.slug}/items/{a.item.public_id}/flag/", {"comment": "again"},
                      content_type="application/json")
    assert api.status_code == 409 and "already reported" in api.json()["errors"]["comment"]
    assert Flag.objects.count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():  # the database's rule, not only the code's
        Flag.objects.create(item=a.item, annotator=annotator, comment="raw")
    # 105 open flags (21 annotators x 5 items): the page lists the newest 100 and says 5 more; the API lists all.
    users = [services.annotator_add(username=f"u{i}", password=None, study=study) for i in range(21)]
    items = list(study.items.exclude(pk=a.item_id))
    Flag.objects.bulk_create([Flag(item=item, annotator=u, comment=f"{u.username} {item.pk}")
                              for u in users for item in items][:104])
    page = admin_client.get(f"/studies/{study.slug}/manage/").content.decode()
    assert page.count("Mark resolved<span") == 100 and "105 open report(s)" in page
    assert "5 more" in page and f"/api/staff/studies/{study.slug}/flags/" in page
    assert len(admin_client.get(f"/api/staff/studies/{study.slug}/flags/").json()) == 105


def test_onboarding_comes_after_the_instructions_and_stops_at_the_time_limit(tmp_path):
    study = _onboarding_study(tmp_path, "gold")
    crowd_settings_update(study=study, minutes_per_participant=10)
    link = link_create(study=study)
    client = Client()
    client.post(f"/join/{link.token}/", {"display_name": "Ada"})
    participant = Participant.objects.get()
    for response in (client.get(f"/studies/{study.slug}/onboarding/"),
                     client.post(f"/studies/{study.slug}/onboarding/x/", ANSWERS)):
        assert response.status_code == 302 and response["Location"] == f"/studies/{study.slug}/"
    assert participant.onboarding == {}
    client.post(f"/studies/{study.slug}/")  # the instructions, read
    assert client.get(f"/studies/{study.slug}/onboarding/").status_code == 200
    current = onboarding_next(participant=Participant.objects.get())
    Participant.objects.update(deadline=timezone.now() - timedelta(seconds=1))
    with pytest.raises(services.ParticipantInactive, match="time for this study is up"):
        onboarding_answer(participant=participant, public_id=current["item"].public_id, answers=answer_all("A"))
    participant.refresh_from_db()
    assert participant.status == Participant.Status.TIMED_OUT and participant.onboarding.get("answers") == {}
    response = client.post(f"/studies/{study.slug}/onboarding/{current['item'].public_id}/", ANSWERS, follow=True)
    assert response.redirect_chain[-1][0] == f"/studies/{study.slug}/end/" and response.status_code == 403


@pytest.mark.parametrize("param", ["PROLIFIC_PID", "STUDY_ID", "SESSION_ID"])
def test_a_repeated_prolific_parameter_is_a_400(tmp_path, param):
    study = toy_study(tmp_path, n=1, overlap=1)
    link = link_create(study=study)
    query = {"PROLIFIC_PID": "p1", "STUDY_ID": "s1", "SESSION_ID": "x1"}
    query[param] = [query[param], "other"]
    for response in (Client().get(f"/join/{link.token}/", query), Client().post(f"/join/{link.token}/", query)):
        assert response.status_code == 400 and f"{param} is given more than once".encode() in response.content
    assert not Participant.objects.exists()


INVISIBLE = "\u200b\u200d\u200f\u202e \u2060\ufeff\u3164\t"


def test_text_of_only_invisible_characters_is_empty_for_flags_comments_and_names(tmp_path):
    study = toy_study(tmp_path, n=1, overlap=1)
    annotator = services.annotator_add(username="ann", password=None, study=study)
    a = services.assignment_next(study=study, annotator=annotator)
    with pytest.raises(services.RatingInvalid, match="write what is wrong"):
        services.flag_create(study=study, annotator=annotator, public_id=a.item.public_id, comment=INVISIBLE)
    with pytest.raises(EnrolmentRefused):
        display_name_clean(INVISIBLE)
    ratings = services.rating_submit(assignment=a, answers=answer_all("A"), comment=INVISIBLE)
    assert {r.comment for r in ratings} == {""}
    flag = services.flag_create(study=study, annotator=annotator, public_id=a.item.public_id,
                                comment="\u202ebroken\u200b\nline two")
    assert flag.comment == "broken\u200b\nline two"  # the override goes; a zero-width space is kept as typed


def test_a_comment_keeps_the_joiners_persian_and_emoji_need():
    """Only controls and bidi overrides go: a Persian word's zero-width non-joiner and an emoji's joiners stay."""
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # "mi-khaham", ZWNJ inside
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert services.comment_clean(f"{persian} {family}") == f"{persian} {family}"
    assert services.comment_clean("\u202ea\x07b\u2066c\u2069") == "abc"


def test_a_waiting_participant_whose_study_then_closes_complete_gets_no_work_not_being_prepared(tmp_path):
    study = toy_study(tmp_path, n=1, overlap=1)
    crowd_settings_update(study=study, completion_code="DONE1")
    link = link_create(study=study)
    first = _prolific_client(study, link, pid="p1")
    late = _prolific_client(study, link, pid="p2", session="s2")
    first.post(_current_item(first, study), ANSWERS)  # the only item: the study closes itself, complete
    study.refresh_from_db()
    assert not study.is_open
    assert late.get(f"/studies/{study.slug}/annotate/")["Location"] == f"/studies/{study.slug}/end/"
    page = late.get(f"/studies/{study.slug}/end/")
    assert page.status_code == 200 and b"no item left for you" in page.content
    assert Participant.objects.get(prolific_pid="p2").status == Participant.Status.NO_WORK


@pytest.mark.django_db(transaction=True)
def test_a_database_with_duplicate_open_flags_migrates_keeping_the_newest_open(tmp_path):
    """Migration 0006 resolves earlier open duplicates before adding the one-open-flag constraint."""
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    study = toy_study(tmp_path, n=1, overlap=1)
    annotator = services.annotator_add(username="ann", password=None, study=study)
    item = study.items.get()
    call_command("migrate", "annotation", "0005", verbosity=0)
    try:
        old = MigrationExecutor(connection).loader.project_state(("annotation", "0005_enrolment")).apps
        OldFlag = old.get_model("annotation", "Flag")  # noqa: N806 (a model class)
        ids = [OldFlag.objects.create(item_id=item.pk, annotator_id=annotator.pk, comment=f"spam {i}").pk
               for i in range(3)]
    finally:
        call_command("migrate", "annotation", verbosity=0)
    open_ids = list(Flag.objects.filter(resolved_at__isnull=True).values_list("pk", flat=True))
    assert open_ids == [ids[-1]] and Flag.objects.count() == 3
