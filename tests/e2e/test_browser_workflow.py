"""The annotator's workflow (issue 21) in a real Chromium with no network: back and change, skip,
flag, comment, the instructions panel, and every annotator page at 390 px.

Each annotator page passes the staff pages' checks (axe-core: no serious or critical violation;
not wider than the window) at 390 px, and the submit bar stays in view while the item scrolls.
"""
import csv
import io
import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from annotation.models import Assignment, Flag, Rating
from annotation.services import annotator_add, study_import_jsonl

from .browsing import broken_words, check_page, log_in, needs_chromium, offline_page

pytestmark = [pytest.mark.browser, needs_chromium]
PASSWORD = "correct-horse-9"
BASELINE, CHALLENGER = "PreSFT(Hist)", "PostGRAG"
CHOICE_LABEL = {"A": "Response A is better", "B": "Response B is better", "S": "Similar"}
LONG_WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 4
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
RTL = "שלום, מה שלומך היום? مرحبا كيف حالك"


def _study(tmp_path: Path, *, n: int = 3, overlap: int = 1, slug: str = "wf"):
    """A study whose texts are long, hostile-looking and mixed-direction, to test layout and escaping."""
    lines = []
    for i in range(n):
        lines.append({
            "key": f"wf-{i:03d}",
            "persona": f"I am a nurse. {LONG_WORD} I have {i + 2} dogs. <b>not bold</b>",
            "history": [{"role": "user", "text": f"Hi there ({i})! {RTL}"}, {"role": "agent", "text": "Hello! " * 40},
                        {"role": "user", "text": "What do you do on weekends? " * 6}],
            "generic_response": "That sounds nice.",
            "responses": {BASELINE: f"Baseline words ({i}). " * 30, CHALLENGER: f"My {i + 2} dogs and I bake. " * 30},
        })
    path = tmp_path / f"{slug}.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    study, _ = study_import_jsonl(path=path, slug=slug, baseline=BASELINE, challenger=CHALLENGER, overlap=overlap)
    study.instructions = f"Read **every** response. {LONG_WORD}"
    study.save(update_fields=["instructions"])
    return study


def _start(page, live_server, study, username):
    from playwright.sync_api import expect

    log_in(page, live_server, username, PASSWORD)
    page.goto(f"{live_server.url}/studies/{study.slug}/annotate/")
    page.get_by_role("button", name="I have read the instructions: start").click()
    expect(page.locator("#rating-form")).to_be_visible()


def _answer(page, answers: dict):
    for q, (shown, confidence) in answers.items():
        page.locator(f"#{q}-question label.pill", has_text=CHOICE_LABEL[shown]).click()
        page.locator(f'#{q}-question label:has(input[value="{confidence}"])').click()


ALL_A = {q: ("A", 4) for q in ("q1", "q2", "q3", "q4")}


def _export(study) -> list[dict]:
    out = StringIO()
    call_command("export_votes", study.slug, stdout=out)
    return list(csv.DictReader(io.StringIO(out.getvalue())))


def test_back_and_change_with_a_comment_reaches_the_export(live_server, browser, tmp_path):
    from playwright.sync_api import expect

    study = _study(tmp_path)
    user = annotator_add(username="ann", password=PASSWORD, study=study)
    page = offline_page(browser, live_server)
    _start(page, live_server, study, "ann")
    first = Assignment.objects.get(annotator=user, status="reserved")
    _answer(page, ALL_A)
    page.get_by_label("Comment (optional)").fill("<script>window.__pwned=1</script> =SUM(A1)")
    page.get_by_role("button", name="Submit and go to the next item").click()
    expect(page.locator(".progress-line .count")).to_have_text("1 of 3 done")

    # Back to the previous item: the answers and the comment are filled in.
    page.get_by_role("link", name="Previous item").click()
    expect(page.locator("#editing")).to_be_visible()
    for q in ("q1", "q2", "q3", "q4"):
        expect(page.locator(f'input[name="{q}-choice"][value="A"]')).to_be_checked()
        expect(page.locator(f'input[name="{q}-confidence"][value="4"]')).to_be_checked()
    expect(page.get_by_label("Comment (optional)")).to_have_value("<script>window.__pwned=1</script> =SUM(A1)")
    assert page.evaluate("window.__pwned === undefined")
    _answer(page, {"q1": ("S", 2)})
    page.get_by_label("Comment (optional)").fill("Changed: similar after all.")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".progress-line .count")).to_have_text("1 of 3 done")
    expect(page.get_by_role("button", name="Submit and go to the next item")).to_be_visible()

    current = {r.question: (r.choice, r.comment) for r in Rating.objects.filter(item=first.item, is_current=True)}
    assert current["q1"] == ("similar", "Changed: similar after all.")
    assert Rating.objects.filter(item=first.item).count() == 8  # 4 + 4 appended (the comment changed on each)
    rows = [r for r in _export(study) if r["item_key"] == first.item.key]
    assert {(r["question"], r["choice"], r["comment"]) for r in rows if r["question"] == "q1"} == {
        ("q1", "similar", "Changed: similar after all.")}
    html = page.content()
    assert BASELINE not in html and CHALLENGER not in html
    assert page.outside == [], page.outside


def test_skip_frees_the_slot_for_another_annotator(live_server, browser, tmp_path):
    from playwright.sync_api import expect

    study = _study(tmp_path, overlap=1)
    one = annotator_add(username="one", password=PASSWORD, study=study)
    annotator_add(username="two", password=PASSWORD, study=study)
    page = offline_page(browser, live_server)
    _start(page, live_server, study, "one")
    skipped = Assignment.objects.get(annotator=one, status="reserved").item
    page.get_by_text("Cannot rate this item? Skip it").click()
    page.get_by_label("I cannot judge this item").check()
    page.get_by_role("button", name="Skip the item").click()
    expect(page.locator(".notice").first).to_contain_text("Item skipped")
    assert Assignment.objects.get(annotator=one, item=skipped).skip_reason == "cannot_judge"
    assert Assignment.objects.get(annotator=one, status="reserved").item_id != skipped.pk

    other = offline_page(browser, live_server)
    _start(other, live_server, study, "two")
    action = other.locator("#rating-form").get_attribute("action")
    assert skipped.public_id in action, "the skipped item's slot should go to the next annotator"


def test_a_flag_reaches_the_staff_page_and_is_resolved(live_server, browser, tmp_path):
    from playwright.sync_api import expect

    study = _study(tmp_path)
    annotator_add(username="ann", password=PASSWORD, study=study)
    User.objects.create_user("boss", password=PASSWORD, is_staff=True)
    page = offline_page(browser, live_server)
    _start(page, live_server, study, "ann")
    _answer(page, {"q1": ("B", 5)})
    page.get_by_text("Report a problem with this item to staff").click()
    page.get_by_label("What is wrong with this item?").fill(f"Response B repeats itself. {RTL} <img src=x onerror=alert(1)>")
    page.get_by_role("button", name="Send the report").click()
    expect(page.locator(".notice").first).to_contain_text("staff will look at this item")
    expect(page.locator('input[name="q1-choice"][value="B"]')).to_be_checked()  # what was typed is kept
    assert Flag.objects.count() == 1

    staff = offline_page(browser, live_server)
    log_in(staff, live_server, "boss", PASSWORD)
    staff.goto(f"{live_server.url}/studies/{study.slug}/manage/")
    expect(staff.locator("#flags")).to_contain_text("Response B repeats itself.")
    expect(staff.locator("#flags")).to_contain_text("<img src=x onerror=alert(1)>")  # shown as text
    staff.get_by_role("button", name="Mark resolved").click()
    expect(staff.locator("#flags")).to_contain_text("No open flags")
    assert Flag.objects.get().resolved_by.username == "boss"


def test_every_annotator_page_fits_390px_passes_axe_and_keeps_the_submit_bar_in_view(live_server, browser, tmp_path):
    from playwright.sync_api import expect

    study = _study(tmp_path, n=2)
    annotator_add(username="ann", password=PASSWORD, study=study)
    page = offline_page(browser, live_server, width=390, height=844)
    log_in(page, live_server, "ann", PASSWORD)
    problems = []

    def check(where: str):
        problems.extend(check_page(page, where=where))

    page.goto(f"{live_server.url}/studies/")
    check("study list")
    problems.extend(f"study list: word broken {w}" for w in broken_words(page))  # no squeezed cells (review)
    page.goto(f"{live_server.url}/studies/{study.slug}/")
    check("instructions")
    page.get_by_role("button", name="I have read the instructions: start").click()
    expect(page.locator("#rating-form")).to_be_visible()
    check("annotate")

    # The instructions reopen in a panel on the annotate page.
    page.get_by_text("Instructions", exact=True).click()
    expect(page.locator("#instructions-panel")).to_contain_text("Read every response.")
    check("annotate, instructions open")
    page.get_by_text("Cannot rate this item? Skip it").click()
    page.get_by_text("Report a problem with this item to staff").click()
    check("annotate, skip and flag open")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "annotate-workflow-390.png"), full_page=True)

    # The submit bar stays in view wherever the item is scrolled.
    submit = page.get_by_role("button", name="Submit and go to the next item")
    height = page.viewport_size["height"]
    assert page.evaluate("document.documentElement.scrollHeight") > 2 * height, "the item should need scrolling"
    for fraction in (0, 0.3, 0.6):
        page.evaluate(f"window.scrollTo(0, document.documentElement.scrollHeight * {fraction})")
        box = submit.bounding_box()
        assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= height, (fraction, box)

    _answer(page, ALL_A)
    submit.click()
    expect(page.locator(".progress-line .count")).to_have_text("1 of 2 done")
    page.get_by_role("link", name="Previous item").click()
    expect(page.locator("#editing")).to_be_visible()
    check("earlier item")
    page.goto(f"{live_server.url}/studies/{study.slug}/done/")
    check("done items")
    page.screenshot(path=str(SCREENSHOTS / "done-items-390.png"), full_page=True)
    page.goto(f"{live_server.url}/studies/{study.slug}/annotate/")
    _answer(page, ALL_A)
    page.get_by_role("button", name="Submit and go to the next item").click()
    expect(page.locator("#all-done")).to_be_visible()
    check("all done")
    assert not problems, "\n".join(problems)
    assert page.outside == [], page.outside
