"""Crowd studies (issue 21) on the real database: links, enrolment, Prolific ids, time limit, onboarding,
which ratings count, auto-close and the per-participant export."""
import csv
import io
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.utils import timezone

from annotation import selectors, services
from annotation.aggregation import study_aggregate
from annotation.enrolment_models import CrowdSettings, Participant, StudyLink
from annotation.models import Assignment, Item, Rating
from annotation.participants import participant_rows, ratings_counted
from annotation.services.enrolment import display_name_clean, participant_enrol, participant_leave, prolific_params
from annotation.services.links import EnrolmentRefused, crowd_settings_update, link_create, link_set_active
from annotation.services.onboarding import onboarding_answer, onboarding_next
from tests.factories import answer_all, jsonl_write, toy_study, toy_study_lines

pytestmark = pytest.mark.django_db
PROLIFIC = {"prolific_pid": "5f3a9c1e2b7d4a0012ab34cd", "prolific_study_id": "s1", "prolific_session_id": "x1"}


def rate_all(study, user, choice="A") -> int:
    n = 0
    while (a := services.assignment_next(study=study, annotator=user)) is not None:
        services.rating_submit(assignment=a, answers=answer_all(choice))
        n += 1
    return n


def test_a_link_enrols_volunteers_up_to_its_cap_and_a_full_link_creates_nothing(tmp_path):
    study = toy_study(tmp_path, n=4, overlap=2)
    link = link_create(study=study, max_participants=2)
    assert len(link.token) >= 32 and link.token != link_create(study=study).token
    first, created = participant_enrol(token=link.token, display_name="Ada")
    assert created and first.status == Participant.Status.ACTIVE
    assert not first.user.has_usable_password() and first.user.username != "Ada"
    assert study.annotators.filter(pk=first.user.pk).exists()
    participant_enrol(token=link.token, display_name="Ada")  # a second volunteer may share a name
    users_before = first.user.__class__.objects.count()
    with pytest.raises(EnrolmentRefused) as exc:
        participant_enrol(token=link.token, display_name="Late")
    assert exc.value.status == 409 and "full" in str(exc.value)
    assert first.user.__class__.objects.count() == users_before and study.participants.count() == 2


@pytest.mark.parametrize("state, status", [("expired", 410), ("deactivated", 410), ("unknown", 404), ("closed", 403)])
def test_expired_deactivated_unknown_and_closed_links_refuse_with_a_clear_status(tmp_path, state, status):
    study = toy_study(tmp_path, n=2)
    link = link_create(study=study)
    token = link.token
    if state == "expired":
        StudyLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif state == "deactivated":
        link_set_active(link=link, is_active=False)
    elif state == "unknown":
        token = "nope"
    else:
        services.study_update(study=study, is_open=False)
    with pytest.raises(EnrolmentRefused) as exc:
        participant_enrol(token=token, display_name="Ada")
    assert exc.value.status == status
    assert Participant.objects.count() == 0
    response = Client().post(f"/join/{token}/", {"display_name": "Ada"})
    assert response.status_code == status and b"You cannot join" in response.content
    assert Participant.objects.count() == 0


def test_link_settings_out_of_bounds_are_refused_naming_the_field(tmp_path):
    study = toy_study(tmp_path, n=2)
    with pytest.raises(services.StudyFieldError) as exc:
        link_create(study=study, expires_at=timezone.now() - timedelta(hours=1))
    assert exc.value.field == "expires_at"
    with pytest.raises(services.StudyFieldError) as exc:
        link_create(study=study, max_participants=0)
    assert exc.value.field == "max_participants"
    with pytest.raises(services.StudyFieldError) as exc:
        crowd_settings_update(study=study, completion_code="C0DE; DROP")
    assert exc.value.field == "completion_code"
    with pytest.raises(services.StudyFieldError) as exc:
        crowd_settings_update(study=study, onboarding="gold")  # the study has no gold item
    assert exc.value.field == "onboarding"


def test_the_same_prolific_id_resumes_and_the_database_refuses_a_second_enrolment(tmp_path):
    study = toy_study(tmp_path, n=4, overlap=2)
    link, other_link = link_create(study=study, max_participants=1), link_create(study=study)
    first, created = participant_enrol(token=link.token, prolific=PROLIFIC)
    assert created and first.display_name == f"Prolific {PROLIFIC['prolific_pid']}"
    a = services.assignment_next(study=study, annotator=first.user)
    # Full link, and another link of the study: the same PID gets its own participant back.
    again, created = participant_enrol(token=link.token, prolific=PROLIFIC)
    assert (again.pk, created) == (first.pk, False)
    assert participant_enrol(token=other_link.token, prolific=PROLIFIC) == (again, False)
    assert services.assignment_next(study=study, annotator=again.user).pk == a.pk
    # The rule is the database's, not only the code's.
    with pytest.raises(IntegrityError), transaction.atomic():
        Participant.objects.create(study=study, link=other_link, user=services.annotator_add(
            username="x", password=None, study=None), display_name="x", enrolled_at=timezone.now(),
            prolific_pid=PROLIFIC["prolific_pid"])


def test_prolific_parameters_are_checked():
    assert prolific_params({}) == {}
    assert prolific_params({"PROLIFIC_PID": "abc", "STUDY_ID": "s", "SESSION_ID": "t"})["prolific_pid"] == "abc"
    for bad in ({"PROLIFIC_PID": "<script>"}, {"STUDY_ID": "s"}, {"PROLIFIC_PID": "a" * 65}):
        with pytest.raises(EnrolmentRefused):
            prolific_params(bad)


@pytest.mark.parametrize("raw, stored", [
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),  # kept as text; templates escape it
    ("=HYPERLINK(\"http://x\")", "=HYPERLINK(\"http://x\")"),  # kept; the CSV writer neutralises it
    ("\u202eevil\u202c name", "evil name"),  # bidi override dropped
    ("  سارة   ", "سارة"),  # a right-to-left name is a name
])
def test_hostile_display_names_are_stored_harmlessly(raw, stored):
    assert display_name_clean(raw) == stored


@pytest.mark.parametrize("raw", ["", "   ", "\u202e\u200f", "x" * 61])
def test_empty_and_very_long_display_names_are_refused(raw):
    with pytest.raises(EnrolmentRefused) as exc:
        display_name_clean(raw)
    assert exc.value.field == "display_name" and exc.value.status == 400


def test_hostile_names_are_escaped_on_the_staff_page_and_neutralised_in_the_csv(tmp_path, admin_client):
    study = toy_study(tmp_path, n=2, overlap=1)
    link = link_create(study=study)
    for name in ("<b>bold</b>", "=1+2", "@SUM(A1)"):
        participant_enrol(token=link.token, display_name=name)
    page = admin_client.get(f"/studies/{study.slug}/manage/").content.decode()
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page
    rows = list(csv.DictReader(io.StringIO(admin_client.get(
        f"/studies/{study.slug}/manage/participants.csv").content.decode())))
    assert [r["display_name"] for r in rows] == ["<b>bold</b>", "'=1+2", "'@SUM(A1)"]


def test_the_items_per_participant_and_the_time_limit_stop_new_items(tmp_path):
    study = toy_study(tmp_path, n=6, overlap=1)
    crowd_settings_update(study=study, items_per_participant=2, minutes_per_participant=30)
    link = link_create(study=study)
    p, _ = participant_enrol(token=link.token, display_name="Ada")
    assert p.deadline is not None
    assert rate_all(study, p.user) == 2
    p.refresh_from_db()
    assert p.status == Participant.Status.FINISHED
    # Another participant runs out of time holding a reservation: no new item, the slot is freed.
    q, _ = participant_enrol(token=link.token, display_name="Bo")
    held = services.assignment_next(study=study, annotator=q.user)
    Participant.objects.filter(pk=q.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    assert services.assignment_next(study=study, annotator=q.user) is None
    q.refresh_from_db()
    assert q.status == Participant.Status.TIMED_OUT
    held.refresh_from_db()
    assert held.status == Assignment.Status.EXPIRED
    with pytest.raises(services.ParticipantInactive, match="time for this study is up"):
        services.rating_submit(assignment=held, answers=answer_all())
    # A named account is not limited.
    (named,) = [services.annotator_add(username="named", password=None, study=study)]
    assert rate_all(study, named) == 4


@pytest.mark.parametrize("counts", [True, False])
def test_work_of_a_participant_who_left_counts_per_the_study_setting(tmp_path, counts):
    study = toy_study(tmp_path, n=2, overlap=2)
    crowd_settings_update(study=study, left_work_counts=counts)
    link = link_create(study=study)
    stay, _ = participant_enrol(token=link.token, display_name="Stay")
    leave, _ = participant_enrol(token=link.token, display_name="Leave")
    assert rate_all(study, stay.user, "A") == 2
    first = services.assignment_next(study=study, annotator=leave.user)
    services.rating_submit(assignment=first, answers=answer_all("A"))
    held = services.assignment_next(study=study, annotator=leave.user)
    participant_leave(participant=leave)
    held.refresh_from_db()
    assert held.status == Assignment.Status.EXPIRED  # the reservation is freed at once
    counted = set(ratings_counted(study=study).values_list("rater", flat=True))
    assert (leave.user.username in counted) == counts
    aggregate = study_aggregate(study=study)
    assert int(aggregate.human["ratings"].sum()) == (12 if counts else 8)
    exported = {r["rater"] for r in selectors.study_votes_rows(study=study)}
    assert (leave.user.username in exported) == counts
    row = next(r for r in participant_rows(study=study) if r["participant"] == leave.user.username)
    assert row["counted"] == counts and "left" in row["flags"] and row["items_done"] == 1


def test_the_study_closes_itself_when_every_item_has_its_overlap(tmp_path):
    study = toy_study(tmp_path, n=2, overlap=2)
    link = link_create(study=study)
    users = [participant_enrol(token=link.token, display_name=f"P{i}")[0].user for i in range(3)]
    rate_all(study, users[0])
    study.refresh_from_db()
    assert study.is_open
    rate_all(study, users[1])
    study.refresh_from_db()
    assert not study.is_open
    assert services.assignment_next(study=study, annotator=users[2]) is None
    # A study without links (named annotators, as before) stays open.
    plain = toy_study(tmp_path, n=1, overlap=1, slug="plain")
    rate_all(plain, services.annotator_add(username="n", password=None, study=plain))
    plain.refresh_from_db()
    assert plain.is_open


def _onboarding_study(tmp_path, source):
    lines = toy_study_lines(4)
    lines[0]["gold"] = {"q1": "PostGRAG", "q2": "similar"}
    lines[1]["gold"] = {"q1": "PreSFT(Hist)"}
    if source == "own":
        lines[0]["onboarding"] = lines[1]["onboarding"] = True
    study, _ = services.study_import_jsonl(path=jsonl_write(tmp_path / "o.jsonl", lines), slug="onb",
                                           baseline="PreSFT(Hist)", challenger="PostGRAG", overlap=2)
    crowd_settings_update(study=study, onboarding=source, onboarding_items=2, onboarding_threshold=0.66,
                          screenout_code="SCREEN1", completion_code="DONE1")
    return study


def _answer_onboarding(participant, right: int):
    """Answer the onboarding with the first ``right`` known answers right and the others wrong."""
    given = 0
    while (current := onboarding_next(participant=participant)) is not None:
        item, side = current["item"], current["assignment"].baseline_side
        shown = {"baseline": side, "challenger": "B" if side == "A" else "A", "similar": "S"}
        wrong = {"baseline": "S", "challenger": "S", "similar": "A"}
        answers = []
        for q in ("q1", "q2", "q3", "q4"):
            known = item.gold_answers.get(q)
            if known is None:
                answers.append(services.Answer(q, "A", 3))
                continue
            answers.append(services.Answer(q, shown[known] if given < right else wrong[known], 3))
            given += 1
        participant = onboarding_answer(participant=participant, public_id=item.public_id, answers=answers)
    return participant


@pytest.mark.parametrize("source", ["gold", "own"])
def test_onboarding_admits_at_the_threshold_screens_out_below_and_its_answers_count_nowhere(tmp_path, source):
    study = _onboarding_study(tmp_path, source)
    link = link_create(study=study)
    good, _ = participant_enrol(token=link.token, prolific={**PROLIFIC, "prolific_pid": "good"})
    bad, _ = participant_enrol(token=link.token, prolific={**PROLIFIC, "prolific_pid": "bad"})
    assert good.status == Participant.Status.ONBOARDING
    assert services.assignment_next(study=study, annotator=good.user) is None  # no item before onboarding
    good = _answer_onboarding(good, right=2)  # 2 of 3 known answers: 0.67 >= 0.66
    bad = _answer_onboarding(bad, right=1)
    assert (good.status, bad.status) == (Participant.Status.ACTIVE, Participant.Status.SCREENED_OUT)
    assert (good.onboarding["correct"], good.onboarding["graded"]) == (2, 3)
    assert Rating.objects.count() == 0  # onboarding answers are no ratings
    assert services.assignment_next(study=study, annotator=bad.user) is None
    assert services.assignment_next(study=study, annotator=good.user) is not None
    rows = {r["prolific_pid"]: r for r in participant_rows(study=study)}
    assert (rows["bad"]["onboarding_correct"], rows["bad"]["counted"]) == (1, False)
    assert "screened_out" in rows["bad"]["flags"]
    # The screened-out participant goes to Prolific with the screen-out code.
    client = Client()
    client.force_login(bad.user)
    response = client.get(f"/studies/{study.slug}/end/")
    assert response.status_code == 302
    assert response["Location"] == "https://app.prolific.com/submissions/complete?cc=SCREEN1"


def test_a_screened_out_participants_ratings_are_left_out_of_every_aggregate(tmp_path):
    study = toy_study(tmp_path, n=2, overlap=2)
    link = link_create(study=study)
    a, _ = participant_enrol(token=link.token, display_name="A")
    b, _ = participant_enrol(token=link.token, display_name="B")
    rate_all(study, a.user, "A")
    rate_all(study, b.user, "B")
    assert study_aggregate(study=study).human["ratings"].sum() == 16
    Participant.objects.filter(pk=b.pk).update(status=Participant.Status.SCREENED_OUT)
    assert study_aggregate(study=study).human["ratings"].sum() == 8
    assert {r["rater"] for r in selectors.study_votes_rows(study=study)} == {a.user.username}
    # LLM ratings (no annotator) still count.
    item = study.items.filter(kind=Item.Kind.NORMAL).first()
    Rating.objects.create(item=item, question="q1", rater="judge", rater_kind="llm", choice="baseline", confidence=5)
    assert ratings_counted(study=study).filter(rater="judge").count() == 1


def test_the_join_page_resumes_in_the_same_browser_and_refuses_a_bad_name(tmp_path):
    study = toy_study(tmp_path, n=3, overlap=1)
    link = link_create(study=study)
    client = Client()
    assert client.get(f"/join/{link.token}/").status_code == 200
    response = client.post(f"/join/{link.token}/", {"display_name": "x" * 80})
    assert response.status_code == 400 and b"at most 60" in response.content
    assert Participant.objects.count() == 0
    response = client.post(f"/join/{link.token}/", {"display_name": "Ada"})
    assert response.status_code == 302 and response["Location"] == f"/studies/{study.slug}/annotate/"
    # Opening the link again from the same browser resumes: no second participant.
    assert client.get(f"/join/{link.token}/")["Location"] == f"/studies/{study.slug}/annotate/"
    assert Participant.objects.count() == 1
    # Prolific parameters that are not ids: a clear 400.
    assert Client().get(f"/join/{link.token}/?PROLIFIC_PID=%3Cb%3E").status_code == 400


def test_staff_manage_links_and_export_participants_over_the_api_and_a_command(tmp_path, admin_client, capsys):
    from django.core.management import call_command

    study = toy_study(tmp_path, n=2, overlap=1)
    url = f"/api/staff/studies/{study.slug}/links/"
    response = admin_client.post(url, {"label": "wave 1", "max_participants": 5}, content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["max_participants"] == 5 and body["url"].endswith(f"/join/{body['token']}/")
    assert admin_client.post(url, {"max_participants": -1}, content_type="application/json").status_code == 400
    participant_enrol(token=body["token"], display_name="Ada")
    assert admin_client.get(url).json()[0]["participants"] == 1
    patch = admin_client.patch(f"{url}{body['id']}/", {"is_active": False}, content_type="application/json")
    assert patch.status_code == 200 and patch.json()["is_active"] is False
    crowd = admin_client.patch(f"/api/staff/studies/{study.slug}/crowd/", {"items_per_participant": 0},
                               content_type="application/json")
    assert crowd.status_code == 400 and "items_per_participant" in crowd.json()["errors"]
    rows = admin_client.get(f"/api/staff/studies/{study.slug}/participants/").json()
    assert [r["display_name"] for r in rows] == ["Ada"]
    call_command("study_link", "create", study.slug, "--cap", "3", "--label", "cmd")
    assert StudyLink.objects.filter(study=study, label="cmd", max_participants=3).exists()
    call_command("export_participants", study.slug)
    assert "Ada" in capsys.readouterr().out
    assert CrowdSettings.objects.count() == 0  # nothing was saved by the refused patch


def test_the_agreement_report_shows_onboarding_and_leaves_out_screened_out_participants(tmp_path, admin_client):
    from reports.build import report_build

    study = _onboarding_study(tmp_path, "own")
    link = link_create(study=study)
    good, _ = participant_enrol(token=link.token, display_name="Good")
    bad, _ = participant_enrol(token=link.token, display_name="Bad")
    good, bad = _answer_onboarding(good, right=3), _answer_onboarding(bad, right=0)
    named = services.annotator_add(username="named", password=None, study=study)
    rate_all(study, good.user, "A")
    rate_all(study, named, "A")
    # A screened-out participant's ratings (stored before the screening, say) are in no figure.
    item = study.items.filter(kind=Item.Kind.NORMAL).first()
    Rating.objects.create(item=item, question="q1", rater=bad.user.username, annotator=bad.user, choice="challenger",
                          confidence=5)
    report = report_build(study=study)
    assert {a["rater"] for a in report["annotators"]} == {good.user.username, "named"}
    assert [(o["participant"], o["status"], o["correct"], o["graded"], o["counted"]) for o in report["onboarding"]] == [
        (good.user.username, "active", 3, 3, True), (bad.user.username, "screened_out", 0, 3, False)]
    page = admin_client.get(f"/studies/{study.slug}/report/")
    assert page.status_code == 200 and b"Onboarding of crowd participants" in page.content


def test_after_the_time_limit_the_participant_gets_a_clear_page_and_no_item(tmp_path):
    study = toy_study(tmp_path, n=3, overlap=1)
    crowd_settings_update(study=study, minutes_per_participant=10)
    link = link_create(study=study)
    client = Client()
    client.post(f"/join/{link.token}/", {"display_name": "Ada"})
    client.post(f"/studies/{study.slug}/")  # the instructions, read
    assert client.get(f"/studies/{study.slug}/annotate/").status_code == 200
    Participant.objects.update(deadline=timezone.now() - timedelta(seconds=1))
    response = client.get(f"/studies/{study.slug}/annotate/", follow=True)
    assert response.status_code == 403 and b"Your time for this study is up" in response.content
    assert not Assignment.objects.filter(status=Assignment.Status.RESERVED).exists()
    assert Participant.objects.get().status == Participant.Status.TIMED_OUT


def test_staff_create_and_deactivate_links_on_the_study_page_and_bad_input_is_a_4xx(tmp_path, admin_client):
    study = toy_study(tmp_path, n=2, overlap=1)
    manage = f"/studies/{study.slug}/manage/"
    response = admin_client.post(f"{manage}links/", {"label": "wave 1", "max_participants": "2", "expires_at": ""})
    assert response.status_code == 302
    link = StudyLink.objects.get(study=study)
    page = admin_client.get(manage).content.decode()
    assert f"/join/{link.token}/" in page and "wave 1" in page
    bad = admin_client.post(f"{manage}links/", {"max_participants": "0"})
    assert bad.status_code == 422 and b"greater than or equal to 1" in bad.content
    assert admin_client.post(f"{manage}links/{link.pk}/active/", {"is_active": "0"}).status_code == 302
    link.refresh_from_db()
    assert not link.is_active
    assert Client().get(f"/join/{link.token}/").status_code == 410
    bad = admin_client.post(f"{manage}crowd/", {"onboarding": "gold", "onboarding_items": "3",
                                                "onboarding_threshold": "0.5"})
    assert bad.status_code == 422 and b"no gold item" in bad.content
    ok = admin_client.post(f"{manage}crowd/", {"onboarding": "none", "onboarding_items": "3", "onboarding_threshold": "0.5",
                                               "items_per_participant": "5", "completion_code": "ABC123"})
    assert ok.status_code == 302
    assert CrowdSettings.objects.get(study=study).items_per_participant == 5
    # Not for annotators.
    annotator = services.annotator_add(username="ann", password=None, study=study)
    client = Client()
    client.force_login(annotator)
    assert client.post(f"{manage}links/", {"label": "x"}).status_code == 403
    assert client.get(f"{manage}participants.csv").status_code == 403
    assert client.get(f"/api/staff/studies/{study.slug}/participants/").status_code == 403


def test_a_participant_whose_study_closes_before_their_first_item_gets_no_completion_code(tmp_path):
    study = toy_study(tmp_path, n=2, overlap=1)
    crowd_settings_update(study=study, completion_code="DONE1")
    link = link_create(study=study)
    client = Client()
    client.get(f"/join/{link.token}/?PROLIFIC_PID=p1")
    client.post(f"/join/{link.token}/", {"PROLIFIC_PID": "p1"})
    client.post(f"/studies/{study.slug}/")
    services.study_update(study=study, is_open=False)
    page = client.get(f"/studies/{study.slug}/annotate/")
    assert page.status_code == 200 and b"being prepared" in page.content
    assert Participant.objects.get().status == Participant.Status.ACTIVE
    # Reopened, they rate; once nothing is left they finish and go to Prolific with the code.
    services.study_update(study=study, is_open=True)
    page = client.get(f"/studies/{study.slug}/annotate/")
    action = page.content.decode().split('id="rating-form"')[1].split('action="')[1].split('"')[0]
    answers = {f"{q}-choice": "A" for q in ("q1", "q2", "q3", "q4")} | {f"{q}-confidence": "4" for q in ("q1", "q2", "q3", "q4")}
    client.post(action, answers)
    page = client.get(f"/studies/{study.slug}/annotate/")
    action = page.content.decode().split('id="rating-form"')[1].split('action="')[1].split('"')[0]
    response = client.post(action, answers, follow=False)
    assert client.get(response["Location"])["Location"] == f"/studies/{study.slug}/end/"
    assert client.get(f"/studies/{study.slug}/end/")["Location"] == \
        "https://app.prolific.com/submissions/complete?cc=DONE1"


def test_an_onboarding_item_offers_no_skip_flag_or_comment_and_a_rated_item_does(tmp_path):
    """Qualification items are answered, never skipped, flagged or commented; admitted, the items offer all three."""
    study = _onboarding_study(tmp_path, "own")
    link = link_create(study=study)
    client = Client()
    client.post(f"/join/{link.token}/", {"display_name": "Ada"})
    participant = Participant.objects.get()
    services.instructions_confirm(study=study, annotator=participant.user)
    page = client.get(f"/studies/{study.slug}/annotate/", follow=True)
    assert page.redirect_chain[-1][0] == f"/studies/{study.slug}/onboarding/"
    html = page.content.decode()
    assert "Skip the item" not in html and "Report a problem" not in html and "Comment (optional)" not in html
    assert _answer_onboarding(participant, right=3).status == Participant.Status.ACTIVE
    html = client.get(f"/studies/{study.slug}/annotate/").content.decode()
    assert "Skip the item" in html and "Report a problem" in html and "Comment (optional)" in html
