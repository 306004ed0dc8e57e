"""An annotator rates two items in a real Chromium: one with the mouse, one with keyboard shortcuts.

Drives Debian's Chromium (``apt-get install chromium``) through Playwright against pytest-django's
live server; never downloads a browser.
"""
import os
from pathlib import Path

import pytest

from annotation.models import Assignment, Rating
from annotation.services import annotator_add, study_import_jsonl
from tests.factories import BASELINE, CHALLENGER, jsonl_write, study_line

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed: run `apt-get install -y chromium`"),
]

# What the annotator answers on each item: question -> (shown choice, confidence).
MOUSE_ANSWERS = {"q1": ("A", 5), "q2": ("B", 4), "q3": ("S", 3), "q4": ("A", 2)}
KEYBOARD_ANSWERS = {"q1": ("B", 4), "q2": ("A", 5), "q3": ("S", 1), "q4": ("B", 3)}
KEY_FOR_CHOICE = {"A": "1", "B": "2", "S": "3"}
CHOICE_LABEL = {"A": "Response A is better", "B": "Response B is better", "S": "Similar"}


def _study_file(path: Path) -> Path:
    jsonl_write(path, [study_line(
        key=f"spc-test-{i:04d}", persona="I am a nurse. I have two dogs. I love baking bread on weekends.",
        history=[
            {"role": "user", "text": "Hi! What do you do for fun?"},
            {"role": "agent", "text": "I bake a lot. And you?"},
            {"role": "user", "text": f"I just got back from a {i + 5}-mile run with my dog."},
        ],
        generic_response="That sounds like a great way to spend the day!",
        responses={
            BASELINE: f"Wow, {i + 5} miles is a lot. I like running too.",
            CHALLENGER: f"Nice! My two dogs would love a {i + 5}-mile run, then I'd bake us some bread.",
        },
    ) for i in range(3)])
    return path


def _expected(assignment: Assignment, answers: dict) -> dict:
    """The canonical answers (baseline / challenger / similar) given the side the baseline was shown on."""
    out = {}
    for q, (shown, confidence) in answers.items():
        if shown == "S":
            canonical = "similar"
        else:
            canonical = "baseline" if shown == assignment.baseline_side else "challenger"
        out[q] = (canonical, shown, confidence)
    return out


def _stored(assignment: Assignment) -> dict:
    return {
        r.question: (r.choice, r.shown_choice, r.confidence)
        for r in Rating.objects.filter(assignment=assignment, is_current=True)
    }


def _new_page(browser, **options):
    page = browser.new_context(viewport={"width": 1280, "height": 900}, **options).new_page()
    page.set_default_timeout(15_000)
    return page


def _log_in_and_start(page, live_server, study, username, password):
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/accounts/login/?next=/studies/{study.slug}/annotate/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("instructions")
    page.get_by_role("button", name="I have read the instructions: start").click()
    expect(page.locator("#rating-form")).to_be_visible()


def _click_answers(page, answers):
    for q, (shown, confidence) in answers.items():
        page.locator(f"#{q}-question label.pill", has_text=CHOICE_LABEL[shown]).click()
        page.locator(f'#{q}-question label:has(input[value="{confidence}"])').click()


def test_annotator_rates_one_item_with_the_mouse_and_one_with_the_keyboard(live_server, browser, tmp_path):
    from playwright.sync_api import expect

    study, _ = study_import_jsonl(path=_study_file(tmp_path / "study.jsonl"), slug="spc-human-eval",
                                  baseline=BASELINE, challenger=CHALLENGER)
    annotator = annotator_add(username="rater1", password="correct-horse-9", study=study)
    page = _new_page(browser)

    # Log in; the first visit to the study shows its instructions.
    _log_in_and_start(page, live_server, study, "rater1", "correct-horse-9")
    assert page.evaluate("typeof window.htmx") == "object", "htmx did not load"
    expect(page.locator(".progress-line .count")).to_have_text("0 of 3 done")

    # Responses side by side on a wide screen.
    box_a = page.locator(".response").nth(0).bounding_box()
    box_b = page.locator(".response").nth(1).bounding_box()
    assert abs(box_a["y"] - box_b["y"]) < 2 and box_b["x"] > box_a["x"] + box_a["width"] - 1

    # Submitting with answers missing shows which, and stores nothing.
    page.locator("#q1-question label.pill", has_text=CHOICE_LABEL["A"]).click()
    page.get_by_role("button", name="Submit and go to the next item").click()
    expect(page.locator(".error-summary")).to_contain_text("Nothing was saved")
    expect(page.locator("#q2-question .errorlist")).to_contain_text("choose Response A, Response B or Similar")
    assert Rating.objects.count() == 0

    # Item 1 with the mouse. A marker on window shows the next item arrives without a page load.
    first = Assignment.objects.get(annotator=annotator, status=Assignment.Status.RESERVED)
    page.evaluate("window.__sameDocument = true")
    _click_answers(page, MOUSE_ANSWERS)
    page.get_by_role("button", name="Submit and go to the next item").click()
    expect(page.locator(".progress-line .count")).to_have_text("1 of 3 done")
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded instead of swapped"
    assert first.item.public_id not in page.locator("#rating-form").get_attribute("action")
    assert _stored(first) == _expected(first, MOUSE_ANSWERS)

    # Item 2 with the keyboard only: 1/2/3 pick A/B/Similar, then 1-5 the confidence; Enter submits.
    second = Assignment.objects.get(annotator=annotator, status=Assignment.Status.RESERVED)
    assert second.item_id != first.item_id
    for _q, (shown, confidence) in KEYBOARD_ANSWERS.items():
        page.keyboard.press(KEY_FOR_CHOICE[shown])
        page.keyboard.press(str(confidence))
    for q, (shown, confidence) in KEYBOARD_ANSWERS.items():
        expect(page.locator(f'input[name="{q}-choice"][value="{shown}"]')).to_be_checked()
        expect(page.locator(f'input[name="{q}-confidence"][value="{confidence}"]')).to_be_checked()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "annotate-item.png"), full_page=True)
    page.keyboard.press("Enter")
    expect(page.locator(".progress-line .count")).to_have_text("2 of 3 done")
    assert page.evaluate("window.__sameDocument === true")
    assert _stored(second) == _expected(second, KEYBOARD_ANSWERS)
    assert Rating.objects.filter(annotator=annotator).count() == 8

    # Nothing in the page names a system.
    html = page.content()
    assert BASELINE not in html and CHALLENGER not in html

    # On a phone-sized screen the responses stack, A above B.
    page.set_viewport_size({"width": 390, "height": 844})
    box_a = page.locator(".response").nth(0).bounding_box()
    box_b = page.locator(".response").nth(1).bounding_box()
    assert box_b["y"] >= box_a["y"] + box_a["height"] - 1
    page.screenshot(path=str(SCREENSHOTS / "annotate-narrow.png"), full_page=True)
    assert os.path.getsize(SCREENSHOTS / "annotate-item.png") > 10_000


def test_without_javascript_the_form_posts_and_redirects_to_the_next_item(live_server, browser, tmp_path):
    from playwright.sync_api import expect

    study, _ = study_import_jsonl(path=_study_file(tmp_path / "study.jsonl"), slug="spc-nojs",
                                  baseline=BASELINE, challenger=CHALLENGER)
    annotator = annotator_add(username="rater2", password="correct-horse-9", study=study)
    page = _new_page(browser, java_script_enabled=False)
    _log_in_and_start(page, live_server, study, "rater2", "correct-horse-9")
    first = Assignment.objects.get(annotator=annotator, status=Assignment.Status.RESERVED)
    _click_answers(page, {**MOUSE_ANSWERS, "q4": ("B", 1)})
    with page.expect_navigation():
        page.get_by_role("button", name="Submit and go to the next item").click()
    assert page.url.endswith(f"/studies/{study.slug}/annotate/")
    expect(page.locator(".progress-line .count")).to_have_text("1 of 3 done")
    assert _stored(first) == _expected(first, {**MOUSE_ANSWERS, "q4": ("B", 1)})
    # A missing answer comes back with the errors on the page; nothing is stored.
    _click_answers(page, {"q1": ("S", 3)})
    page.get_by_role("button", name="Submit and go to the next item").click()
    expect(page.locator(".error-summary")).to_contain_text("Nothing was saved")
    expect(page.locator('input[name="q1-choice"][value="S"]')).to_be_checked()
    assert Rating.objects.filter(annotator=annotator).count() == 4
