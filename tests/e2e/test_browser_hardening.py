"""Issue 17 in a real Chromium: the two responses are laid out alike whatever they hold (finding 7),
and a failed request of the annotate page says so and offers a retry (finding 8).
"""
from pathlib import Path

import pytest

from annotation.models import Assignment, Rating
from annotation.services import annotator_add, study_import_jsonl
from tests.factories import jsonl_write, study_line

from .test_browser_annotate import (
    BASELINE,
    CHALLENGER,
    CHOICE_LABEL,
    CHROMIUM,
    MOUSE_ANSWERS,
    _click_answers,
    _log_in_and_start,
    _new_page,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed: run `apt-get install -y chromium`"),
]
LONG_WORD = "x" * 2000


def _study(path: Path, *, long_side: str) -> Path:
    lines = []
    for i in range(3):
        responses = {BASELINE: f"Short and sweet {i}.", CHALLENGER: f"Another short one {i}."}
        responses[long_side] = f"Look: {LONG_WORD}{i}"
        lines.append(study_line(key=f"wide-{i}", persona="I like long words.",
                                history=[{"role": "user", "text": "Say something long."}], responses=responses))
    jsonl_write(path, lines)
    return path


@pytest.mark.parametrize("long_side", [BASELINE, CHALLENGER])
def test_both_response_boxes_keep_the_same_width_with_a_2000_character_word(live_server, browser, tmp_path, long_side):  # noqa: F811
    study, _ = study_import_jsonl(path=_study(tmp_path / "wide.jsonl", long_side=long_side), slug="wide",
                                  baseline=BASELINE, challenger=CHALLENGER)
    annotator_add(username="wide-rater", password="correct-horse-9", study=study)
    page = _new_page(browser)
    _log_in_and_start(page, live_server, study, "wide-rater", "correct-horse-9")
    for width in (1280, 800):
        page.set_viewport_size({"width": width, "height": 900})
        a = page.locator(".response").nth(0).bounding_box()
        b = page.locator(".response").nth(1).bounding_box()
        main = page.locator("main").bounding_box()
        assert abs(a["width"] - b["width"]) <= 1, f"at {width}px: box A {a['width']}px, box B {b['width']}px"
        assert a["x"] + a["width"] <= b["x"] and b["x"] + b["width"] <= main["x"] + main["width"] + 1
        # The long word wraps inside its box: no horizontal scrolling of the page or of a box.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert page.evaluate(
            "Array.from(document.querySelectorAll('.response .text')).every(e => e.scrollWidth <= e.clientWidth + 1)")
        tall = max(a["height"], b["height"])
        assert tall > 200, "the 2,000-character word should wrap onto many lines"


def test_a_failed_submit_shows_an_error_and_a_retry_that_sends_it_again(live_server, browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    study, _ = study_import_jsonl(path=_study(tmp_path / "s.jsonl", long_side=BASELINE), slug="flaky",
                                  baseline=BASELINE, challenger=CHALLENGER)
    annotator = annotator_add(username="flaky-rater", password="correct-horse-9", study=study)
    page = _new_page(browser)
    _log_in_and_start(page, live_server, study, "flaky-rater", "correct-horse-9")
    first = Assignment.objects.get(annotator=annotator, status=Assignment.Status.RESERVED)
    banner = page.locator("#request-error")
    expect(banner).to_be_hidden()

    # The server answers 503 (what a locked database or a restarting worker gives).
    page.route("**/items/**", lambda route: route.fulfill(status=503, body="Service Unavailable"))
    _click_answers(page, MOUSE_ANSWERS)
    page.get_by_role("button", name="Submit and go to the next item").click()
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("error 503")
    expect(page.get_by_role("button", name="Try again")).to_be_focused()
    assert Rating.objects.count() == 0
    expect(page.locator(f'input[name="q1-choice"][value="{MOUSE_ANSWERS["q1"][0]}"]')).to_be_checked()

    # No answer at all (the connection drops).
    page.unroute("**/items/**")
    page.route("**/items/**", lambda route: route.abort())
    page.get_by_role("button", name="Try again").click()
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("could not be reached")

    # The server is back: Try again sends the same answers and the next item comes.
    page.unroute("**/items/**")
    page.get_by_role("button", name="Try again").click()
    expect(page.locator(".progress-line .count")).to_have_text("1 of 3 done")
    expect(banner).to_be_hidden()
    assert Rating.objects.filter(assignment=first, is_current=True).count() == 4
    assert CHOICE_LABEL  # the page still uses the labels the shared helpers click
