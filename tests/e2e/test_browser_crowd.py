"""Crowd studies in a real Chromium (issue 21): a volunteer joins through a link and resumes; a Prolific
participant goes link -> instructions -> onboarding -> items -> Prolific's completion URL; a failed
onboarding goes to the screen-out URL. Prolific itself is never reached: ``page.route`` answers its
URL and records where the app sent the browser.
"""
import contextlib
import json

import pytest

from annotation.enrolment_models import Participant
from annotation.models import Assignment, Rating
from annotation.services import study_import_jsonl
from annotation.services.links import crowd_settings_update, link_create
from annotation.services.onboarding import onboarding_next

from .browsing import log_in, needs_chromium, offline_page

pytestmark = [pytest.mark.browser, needs_chromium]
BASELINE, CHALLENGER = "PreSFT(Hist)", "PostGRAG"
CHOICE_LABEL = {"A": "Response A is better", "B": "Response B is better", "S": "Similar"}
PROLIFIC = "https://app.prolific.com/"


def _study(tmp_path, *, slug: str, gold: int = 0, normal: int = 4):
    lines = []
    for i in range(normal + gold):
        line = {
            "key": f"crowd-{i:03d}", "persona": "I am a nurse. I have two dogs.",
            "history": [{"role": "user", "text": f"I ran {i + 5} miles with my dog today."}],
            "generic_response": "That sounds like a great day!",
            "responses": {BASELINE: f"Wow, {i + 5} miles.", CHALLENGER: f"My two dogs would love {i + 5} miles!"},
        }
        if i >= normal:
            line["gold"] = {"q1": CHALLENGER, "q2": "similar"}
        lines.append(line)
    path = tmp_path / f"{slug}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    study, _ = study_import_jsonl(path=path, slug=slug, baseline=BASELINE, challenger=CHALLENGER, overlap=2)
    return study


def _prolific_page(browser, live_server):
    """An offline page that records where the app sends the browser on Prolific (``page.prolific``).

    The app's end page answers 302 to Prolific; a redirect's target is not routed by Playwright
    (only the first request of a chain is), so the request is recorded as the browser makes it
    and the navigation then fails for want of a network: Prolific is never reached.
    """
    page = offline_page(browser, live_server)
    page.prolific = []
    page.on("request", lambda r: page.prolific.append(r.url) if r.url.startswith(PROLIFIC) else None)
    return page


def _sent_to_prolific(page) -> list[str]:
    for _ in range(300):
        if page.prolific:
            break
        page.wait_for_timeout(100)
    return page.prolific


def _answer(page, answers: dict) -> None:
    for q, shown in answers.items():
        page.locator(f"#{q}-question label.pill", has_text=CHOICE_LABEL[shown]).click()
        page.locator(f'#{q}-question label:has(input[value="3"])').click()


def _submit(page) -> None:
    page.get_by_role("button", name="Submit and go to the next item").click()


def _onboarding(page, participant, *, right: bool) -> None:
    """Answer every onboarding item in the page, with the known answers or against them."""
    from playwright.sync_api import expect

    while (current := onboarding_next(participant=participant)) is not None:
        expect(page.locator(".notice")).to_contain_text(f"Qualification item {current['index'] + 1} of")
        side = current["assignment"].baseline_side
        challenger = "B" if side == "A" else "A"
        answers = {"q1": challenger, "q2": "S", "q3": "A", "q4": "A"} if right else \
            {"q1": side, "q2": challenger, "q3": "A", "q4": "A"}
        _answer(page, answers)
        _submit(page)
        for _ in range(300):  # until the server has stored this answer (the page then moves on by itself)
            participant.refresh_from_db()
            if len(participant.onboarding.get("answers", {})) > current["index"]:
                break
            page.wait_for_timeout(100)


def test_a_volunteer_joins_with_a_display_name_rates_and_resumes_from_the_same_browser(live_server, browser, tmp_path):
    from playwright.sync_api import expect

    study = _study(tmp_path, slug="crowd-volunteer")
    link = link_create(study=study, max_participants=5)
    page = offline_page(browser, live_server)
    page.goto(f"{live_server.url}/join/{link.token}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Join the study")
    page.get_by_label("Display name").fill("<b>Zoë</b> \u202eadmin")
    page.get_by_role("button", name="Start").click()
    page.get_by_role("button", name="I have read the instructions: start").click()
    expect(page.locator("#rating-form")).to_be_visible()
    participant = Participant.objects.get()
    assert participant.display_name == "<b>Zoë</b> admin" and not participant.user.has_usable_password()
    _answer(page, {"q1": "A", "q2": "B", "q3": "S", "q4": "A"})
    _submit(page)
    expect(page.locator(".progress-line .count")).to_have_text("1 of 4 done")
    held = Assignment.objects.get(annotator=participant.user, status=Assignment.Status.RESERVED)
    # Closing the tab and opening the link again resumes: the same participant and the same item.
    page.goto("about:blank")
    page.goto(f"{live_server.url}/join/{link.token}/")
    expect(page.locator(".progress-line .count")).to_have_text("1 of 4 done")
    assert held.item.public_id in page.locator("#rating-form").get_attribute("action")
    assert Participant.objects.count() == 1
    # Leaving asks first; going back changes nothing; confirming gives the reserved item back at once.
    expect(page.locator("header")).not_to_contain_text("Log out")
    expect(page.get_by_role("link", name="My studies")).to_have_count(0)
    page.get_by_role("link", name="Leave the study").click()
    expect(page.locator("#leave-confirm")).to_be_visible()
    expect(page.locator("#leave-confirm")).not_to_contain_text("completion code")  # a volunteer has none to lose
    page.get_by_role("link", name="No, go back to my items").click()
    expect(page.locator(".progress-line .count")).to_have_text("1 of 4 done")
    held.refresh_from_db()
    assert held.status == Assignment.Status.RESERVED
    page.get_by_role("link", name="Leave the study").click()
    page.get_by_role("button", name="Yes, leave the study").click()
    expect(page.locator("#participant-end")).to_contain_text("You have left the study")
    held.refresh_from_db()
    assert held.status == Assignment.Status.EXPIRED
    assert page.outside == []


def test_a_prolific_participant_goes_through_onboarding_and_items_back_to_prolific_with_the_code(
        live_server, browser, tmp_path):
    from playwright.sync_api import expect

    study = _study(tmp_path, slug="crowd-prolific", gold=2)
    crowd_settings_update(study=study, onboarding="gold", onboarding_items=2, onboarding_threshold=0.75,
                          items_per_participant=2, completion_code="C1OK2345", screenout_code="S0OUT999")
    link = link_create(study=study)
    page = _prolific_page(browser, live_server)
    page.goto(f"{live_server.url}/join/{link.token}/?PROLIFIC_PID=5f3a9c1e2b7d4a0012ab34cd&STUDY_ID=st1&SESSION_ID=se1")
    expect(page.locator("#enrol-form")).to_contain_text("5f3a9c1e2b7d4a0012ab34cd")
    expect(page.locator("#study-size")).to_contain_text("You rate 2 items, after 2 qualification items")
    page.get_by_role("button", name="Start").click()
    page.get_by_role("button", name="I have read the instructions: start").click()
    participant = Participant.objects.get(prolific_pid="5f3a9c1e2b7d4a0012ab34cd")
    assert (participant.prolific_study_id, participant.prolific_session_id) == ("st1", "se1")
    # Onboarding: no link to done items (it has none), no Log out and no My studies; the header names them.
    expect(page.locator(".notice")).to_contain_text("Qualification item 1 of")
    expect(page.locator(".item-nav")).to_have_count(0)
    expect(page.locator("a[href='']")).to_have_count(0)
    expect(page.locator("header .who")).to_have_text("Prolific 5f3a9c1e2b7d4a0012ab34cd")
    expect(page.locator("header")).not_to_contain_text("Log out")
    expect(page.get_by_role("link", name="My studies")).to_have_count(0)
    _onboarding(page, participant, right=True)
    assert participant.status == Participant.Status.ACTIVE
    expect(page.locator(".messages")).to_contain_text("You qualified")
    expect(page.locator(".progress-line .count")).to_have_text("0 of 2 done")  # their items, not the study's 6
    for done in (1, 2):
        expect(page.locator("#rating-form")).to_be_visible()
        expect(page.locator(".notice")).to_have_count(0)
        _answer(page, {"q1": "A", "q2": "B", "q3": "S", "q4": "A"})
        _submit(page)
        if done == 1:
            expect(page.locator(".progress-line .count")).to_have_text("1 of 2 done")
            # Leaving asks first, and says a Prolific participant who leaves gets no completion code.
            page.get_by_role("link", name="Leave the study").click()
            expect(page.locator("#leave-confirm")).to_contain_text("no completion code")
            page.get_by_role("link", name="No, go back to my items").click()
    assert _sent_to_prolific(page) == ["https://app.prolific.com/submissions/complete?cc=C1OK2345"]
    participant.refresh_from_db()
    assert participant.status == Participant.Status.FINISHED
    assert Rating.objects.filter(annotator=participant.user).count() == 8  # two items; onboarding stored no rating
    assert page.outside == []


def test_a_failed_onboarding_sends_the_participant_to_the_screen_out_url(live_server, browser, tmp_path):
    study = _study(tmp_path, slug="crowd-screenout", gold=2)
    crowd_settings_update(study=study, onboarding="gold", onboarding_items=2, completion_code="C1OK2345",
                          screenout_code="S0OUT999")
    link = link_create(study=study)
    page = _prolific_page(browser, live_server)
    page.goto(f"{live_server.url}/join/{link.token}/?PROLIFIC_PID=abc123&STUDY_ID=st1&SESSION_ID=se2")
    page.get_by_role("button", name="Start").click()
    page.get_by_role("button", name="I have read the instructions: start").click()
    participant = Participant.objects.get(prolific_pid="abc123")
    _onboarding(page, participant, right=False)
    assert _sent_to_prolific(page) == ["https://app.prolific.com/submissions/complete?cc=S0OUT999"]
    assert participant.status == Participant.Status.SCREENED_OUT
    assert not Assignment.objects.filter(annotator=participant.user).exists()
    # Opening the link again does not start over.
    from playwright.sync_api import Error as PlaywrightError

    page.prolific.clear()
    with contextlib.suppress(PlaywrightError):  # the navigation ends at Prolific, which is not reachable here
        page.goto(f"{live_server.url}/join/{link.token}/?PROLIFIC_PID=abc123&STUDY_ID=st1&SESSION_ID=se2")
    assert _sent_to_prolific(page) == ["https://app.prolific.com/submissions/complete?cc=S0OUT999"]
    assert Participant.objects.count() == 1 and not Assignment.objects.exists()


def test_the_join_refusal_and_end_pages_pass_axe_and_fit_a_phone(live_server, browser, tmp_path):
    from .browsing import check_page

    study = _study(tmp_path, slug="crowd-phone")
    link, closed = link_create(study=study), link_create(study=study)
    closed.is_active = False
    closed.save()
    page = offline_page(browser, live_server, width=390, height=844)
    problems = []
    page.goto(f"{live_server.url}/join/{closed.token}/")
    problems += check_page(page, where="refused link")
    page.goto(f"{live_server.url}/join/{link.token}/")
    problems += check_page(page, where="join page")
    page.get_by_role("button", name="Start").click()  # no name: the error is on the page
    problems += check_page(page, where="join page with an error")
    page.get_by_label("Display name").fill("Ada")
    page.get_by_role("button", name="Start").click()
    page.get_by_role("button", name="I have read the instructions: start").click()
    page.get_by_role("link", name="Leave the study").click()
    problems += check_page(page, where="leave confirmation")
    page.get_by_role("button", name="Yes, leave the study").click()
    problems += check_page(page, where="end page")
    assert problems == [], "\n".join(problems)
    assert page.outside == []


def test_staff_copy_a_links_urls_and_see_every_participants_column_at_1280_px(live_server, browser, tmp_path):
    """The study page names participants by display name and Prolific id, shows each link's full URL and its
    Prolific URL with copy buttons, and its participants table fits the page (its Flags column in view)."""
    from django.contrib.auth import get_user_model
    from playwright.sync_api import expect

    from annotation.services.enrolment import participant_enrol, participant_leave

    study = _study(tmp_path, slug="crowd-staff")
    link = link_create(study=study, label="wave 1")
    for n in range(3):
        participant, _ = participant_enrol(token=link.token, prolific={
            "prolific_pid": f"5f3a9c1e2b7d4a0012ab34c{n}", "prolific_study_id": "6a1b2c3d4e5f60718293a4b5",
            "prolific_session_id": "7c8d9e0f1a2b3c4d5e6f7081"})
        participant_leave(participant=participant)  # flagged "left" in the table
    # A name without a break opportunity, like the review's "=HYPERLINK(...)evilWWWW...": it must wrap too.
    participant_enrol(token=link.token, display_name="Alexandrina_Victoria_" + "W" * 38)
    get_user_model().objects.create_superuser("boss", "boss@example.org", "pw-boss-1234")
    page = offline_page(browser, live_server, width=1280, height=900)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    log_in(page, live_server, "boss", "pw-boss-1234")
    page.goto(f"{live_server.url}/studies/{study.slug}/manage/")

    url = f"{live_server.url}/join/{link.token}/"
    expect(page.locator(f"#link-url-{link.pk}")).to_have_text(url)
    expect(page.locator(f"#prolific-url-{link.pk}")).to_have_text(
        url + "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}")
    page.locator(f"button[data-copy='prolific-url-{link.pk}']").click()
    expect(page.locator(f"button[data-copy='prolific-url-{link.pk}']")).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()").startswith(url + "?PROLIFIC_PID=")

    annotators = page.locator("section[aria-labelledby='annotators-h'] table")
    expect(annotators).to_contain_text("Alexandrina_Victoria_")
    expect(annotators).to_contain_text("Prolific 5f3a9c1e2b7d4a0012ab34c0")
    expect(annotators).not_to_contain_text("participant-")

    table = page.locator("table.participants")
    table.scroll_into_view_if_needed()
    region = page.locator("#participants .scroll")
    assert region.evaluate("r => r.scrollWidth <= r.clientWidth"), "the participants table is wider than its box"
    flags = page.locator("table.participants th", has_text="Flags")
    box, view = flags.bounding_box(), region.bounding_box()
    assert box["x"] + box["width"] <= view["x"] + view["width"] + 1
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.outside == []
