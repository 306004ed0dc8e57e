"""The new-user review of crowd studies (issue 21): onboarding items in no count, a participant's
total, their navigation and exit, study links staff can hand out, participants named for staff.
Real database, real views through Django's client; the pages in a browser are in
tests/e2e/test_browser_crowd_ux.py."""
import json
import re

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from annotation import selectors, services
from annotation.enrolment_models import Participant
from annotation.models import Assignment, Item
from annotation.services.enrolment import participant_enrol
from annotation.services.links import crowd_settings_update, link_create
from annotation.services.onboarding import onboarding_next
from annotation.services.workflow import assignment_skip, flag_create
from judge.services import judge_run_create, judge_run_items
from tests.factories import answer_all, jsonl_write, toy_study, toy_study_lines

pytestmark = pytest.mark.django_db
PID = "5f3a9c1e2b7d4a0012ab34cd"
PROLIFIC = {"prolific_pid": PID, "prolific_study_id": "s1", "prolific_session_id": "x1"}


def _study_with_onboarding(tmp_path, *, normal: int = 6, onboarding: int = 3, trap_rate: float = 0.0):
    """``normal`` study items (the last a gold item) and ``onboarding`` items of its own, imported for real."""
    lines = toy_study_lines(normal + onboarding)
    for line in lines[:onboarding]:
        line["gold"], line["onboarding"] = {"q1": "PostGRAG", "q2": "similar"}, True
    lines[-1]["gold"] = {"q1": "PreSFT(Hist)"}
    study, imported = services.study_import_jsonl(path=jsonl_write(tmp_path / "o.jsonl", lines), slug="onb",
                                                  baseline="PreSFT(Hist)", challenger="PostGRAG", overlap=2,
                                                  trap_rate=trap_rate)
    assert imported == normal
    return study


def _pass_onboarding(participant: Participant, client: Client, study) -> None:
    """Answer every qualification item right on the onboarding page, as the participant would."""
    while (current := onboarding_next(participant=participant)) is not None:
        item, side = current["item"], current["assignment"].baseline_side
        shown = {"baseline": side, "challenger": "B" if side == "A" else "A", "similar": "S"}
        data = {f"{q}-choice": shown[item.gold_answers[q]] if q in item.gold_answers else "A" for q in
                ("q1", "q2", "q3", "q4")}
        data.update({f"{q}-confidence": "4" for q in ("q1", "q2", "q3", "q4")})
        response = client.post(f"/studies/{study.slug}/onboarding/{item.public_id}/", data)
        assert response.status_code in (200, 302), response.content[:500]
        participant.refresh_from_db()


def test_onboarding_items_are_in_no_count_no_items_table_and_no_judge_run(tmp_path, admin_client):
    study = _study_with_onboarding(tmp_path, trap_rate=0.2)
    onboarding_keys = set(study.items.filter(kind=Item.Kind.ONBOARDING).values_list("key", flat=True))
    traps = study.items.filter(kind__in=[Item.Kind.TRAP_IDENTICAL, Item.Kind.TRAP_REPEAT]).count()
    assert len(onboarding_keys) == 3 and traps > 0

    page = admin_client.get(f"/studies/{study.slug}/manage/").content.decode()
    count = re.search(r'<dd id="items-count">(.*?)</dd>', page, re.S).group(1)
    assert count.startswith("6 (0 fully rated)") and "3 onboarding items apart" in count
    items_table = page[page.index('<table class="items">'):]
    items_table = items_table[:items_table.index("</table>")]
    onboarding_section = page[page.index('id="onboarding-items"'):]
    for key in onboarding_keys:
        assert key not in items_table and key in onboarding_section
    assert "normal" in items_table
    assert admin_client.get(f"/api/staff/studies/{study.slug}/").json()["item_count"] == 6

    run = judge_run_create(study=study, model_id="HuggingFaceTB/SmolLM2-135M-Instruct")
    judged = judge_run_items(run=run)
    assert {item.kind for item in judged} == {Item.Kind.NORMAL, Item.Kind.GOLD} and len(judged) == 6


def test_a_participants_total_is_their_quota_or_what_is_open_to_them_and_a_skip_keeps_it(tmp_path):
    study = toy_study(tmp_path, n=6, overlap=2)
    crowd_settings_update(study=study, items_per_participant=4)
    link = link_create(study=study)
    participant, _ = participant_enrol(token=link.token, display_name="Ada")
    services.instructions_confirm(study=study, annotator=participant.user)
    client = Client()
    client.force_login(participant.user)
    assert "0 of 4 done" in client.get(f"/studies/{study.slug}/annotate/").content.decode()
    first = services.assignment_next(study=study, annotator=participant.user)
    assignment_skip(study=study, annotator=participant.user, public_id=first.item.public_id, reason="cannot_judge")
    assert selectors.annotator_progress(study=study, annotator=participant.user) == {"done": 0, "total": 4}
    for n in range(1, 5):
        services.rating_submit(assignment=services.assignment_next(study=study, annotator=participant.user),
                               answers=answer_all("A"))
        assert selectors.annotator_progress(study=study, annotator=participant.user) == {"done": n, "total": 4}
    # Without a quota the total is what is open to them plus what they did: 6 items, one skipped.
    crowd_settings_update(study=study, items_per_participant=None)
    other, _ = participant_enrol(token=link.token, display_name="Bo")
    assert selectors.annotator_progress(study=study, annotator=other.user) == {"done": 0, "total": 6}
    assert selectors.annotator_progress(study=study, annotator=participant.user) == {"done": 4, "total": 5}


def test_a_participant_has_no_log_out_no_my_studies_and_onboarding_no_dead_links(tmp_path):
    study = _study_with_onboarding(tmp_path)
    crowd_settings_update(study=study, onboarding="own", onboarding_items=3, onboarding_threshold=0.5,
                          items_per_participant=4, minutes_per_participant=30, completion_code="DONE1")
    link = link_create(study=study)
    client = Client()
    join = client.get(f"/join/{link.token}/", {"PROLIFIC_PID": PID, "STUDY_ID": "s1", "SESSION_ID": "x1"})
    text = join.content.decode()
    assert "4 items" in text and "30 minutes" in text and "3 qualification items" in text
    assert "this browser" not in text  # a Prolific participant resumes from Prolific's link in any browser
    response = client.post(f"/join/{link.token}/", {"PROLIFIC_PID": PID, "STUDY_ID": "s1", "SESSION_ID": "x1"})
    assert response.status_code == 302
    participant = Participant.objects.get(prolific_pid=PID)
    services.instructions_confirm(study=study, annotator=participant.user)
    page = client.get(f"/studies/{study.slug}/onboarding/").content.decode()
    assert "Qualification item 1 of 3" in page
    assert 'href=""' not in page and "Your done items" not in page and "Previous item" not in page
    assert "Log out" not in page and "My studies" not in page
    assert participant.user.username not in page and f"{participant.display_name}" in page and PID in page

    _pass_onboarding(participant, client, study)
    assert participant.status == Participant.Status.ACTIVE
    page = client.get(f"/studies/{study.slug}/annotate/", follow=True).content.decode()
    assert "You qualified" in page and "0 of 4 done" in page
    assert "Log out" not in page and "My studies" not in page and "Leave the study" in page
    assert "You qualified" not in client.get(f"/studies/{study.slug}/annotate/").content.decode()  # said once
    for url in (f"/studies/{study.slug}/done/", f"/studies/{study.slug}/"):
        assert "My studies" not in client.get(url, follow=True).content.decode()


def test_a_volunteer_is_told_the_link_resumes_only_in_the_same_browser(tmp_path):
    study = toy_study(tmp_path, n=2)
    link = link_create(study=study)
    text = Client().get(f"/join/{link.token}/").content.decode()
    assert "this browser" in text and "another browser" in text
    assert "as many items as are open" in text and "no time limit" in text


def test_leaving_the_study_asks_first_and_a_prolific_participant_is_told_there_is_no_code(tmp_path):
    study = toy_study(tmp_path, n=4, overlap=2)
    crowd_settings_update(study=study, completion_code="DONE1")
    link = link_create(study=study)
    prolific, _ = participant_enrol(token=link.token, prolific=PROLIFIC)
    volunteer, _ = participant_enrol(token=link.token, display_name="Ada")
    for participant in (prolific, volunteer):
        client = Client()
        client.force_login(participant.user)
        held = services.assignment_next(study=study, annotator=participant.user)
        confirm = client.get(f"/studies/{study.slug}/leave/")
        assert confirm.status_code == 200
        text = confirm.content.decode()
        assert ("no completion code" in text) == bool(participant.prolific_pid)
        assert 'method="post"' in text and "Yes, leave the study" in text
        participant.refresh_from_db()
        held.refresh_from_db()
        assert participant.status == Participant.Status.ACTIVE and held.status == held.Status.RESERVED  # nothing yet
        assert client.post(f"/studies/{study.slug}/leave/").status_code == 302
        participant.refresh_from_db()
        assert participant.status == Participant.Status.LEFT
        # Once left, the confirmation page is not shown again: their end page.
        assert client.get(f"/studies/{study.slug}/leave/")["Location"] == f"/studies/{study.slug}/end/"


def test_staff_see_full_study_and_prolific_urls_and_the_command_prints_them(tmp_path, admin_client, capsys):
    study = toy_study(tmp_path, n=2)
    link = link_create(study=study, label="wave 1")
    page = admin_client.get(f"/studies/{study.slug}/manage/").content.decode()
    url = f"http://testserver/join/{link.token}/"
    prolific = url + "?PROLIFIC_PID={{%PROLIFIC_PID%}}&amp;STUDY_ID={{%STUDY_ID%}}&amp;SESSION_ID={{%SESSION_ID%}}"
    assert f">{url}</code>" in page and f">{prolific}</code>" in page
    assert page.count('class="copy"') == 2

    call_command("study_link", "list", study.slug, "--base-url", "https://eval.example.org/")
    row = json.loads(capsys.readouterr().out.strip())
    assert row["url"] == f"https://eval.example.org/join/{link.token}/"
    assert row["prolific_url"] == (row["url"] + "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}"
                                   "&SESSION_ID={{%SESSION_ID%}}")
    call_command("study_link", "create", study.slug, "--label", "w2", "--base-url", "https://eval.example.org")
    created = json.loads(capsys.readouterr().out.strip())
    assert created["url"].startswith("https://eval.example.org/join/") and created["url"].endswith("/")
    with pytest.raises(CommandError, match="--base-url"):
        call_command("study_link", "list", study.slug, "--base-url", "eval.example.org")


def test_staff_see_participants_by_display_name_and_prolific_id(tmp_path, admin_client):
    study = toy_study(tmp_path, n=4, overlap=2)
    link = link_create(study=study)
    prolific, _ = participant_enrol(token=link.token, prolific=PROLIFIC)
    volunteer, _ = participant_enrol(token=link.token, display_name="Ada Lovelace")
    for participant in (prolific, volunteer):
        for _ in range(2):
            services.rating_submit(assignment=services.assignment_next(study=study, annotator=participant.user),
                                   answers=answer_all("A"))
    item = Assignment.objects.filter(annotator=volunteer.user).first().item
    assert flag_create(study=study, annotator=volunteer.user, public_id=item.public_id, comment="garbled") is not None

    page = admin_client.get(f"/studies/{study.slug}/manage/").content.decode()
    annotators = page[page.index('aria-labelledby="annotators-h"'):]
    annotators = annotators[:annotators.index("</table>")]
    assert "Ada Lovelace" in annotators and f"Prolific {PID}" in annotators and f"({PID})" not in annotators
    assert volunteer.user.username not in annotators and prolific.user.username not in annotators
    flags = page[page.index('id="flags"'):]
    flags = flags[:flags.index("</section>")]
    assert "Ada Lovelace" in flags and volunteer.user.username not in flags

    report = admin_client.get(f"/studies/{study.slug}/report/").content.decode()
    table = report[report.index('<table class="annotators">'):]
    table = table[:table.index("</table>")]
    assert "Ada Lovelace" in table and f"Prolific {PID}" in table and volunteer.user.username not in table
