"""The new-user review's generic UI findings (uifix) in a real Chromium with no network.

"My studies" at 390 px breaks no word (each study a card); "Save changes" on an earlier item ends
on the annotate URL with a saved notice; Skip and "Send the report" disable their button while the
request runs (one request for a double click); the staff study page with an open flag fits 390 px.
"""
import pytest
from django.contrib.auth.models import User

from annotation.models import Flag
from annotation.services import annotator_add

from .browsing import broken_words, check_page, horizontal_overflow, log_in, needs_chromium, offline_page
from .test_browser_staff import _world, staff  # noqa: F401 (fixture)
from .test_browser_workflow import ALL_A, PASSWORD, SCREENSHOTS, _answer, _start, _study

pytestmark = [pytest.mark.browser, needs_chromium]


def test_my_studies_at_390px_shows_each_study_as_a_card_with_whole_words(live_server, browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    first = _study(tmp_path, n=1, slug="wf-one")
    first.title = "Persona chat: which reply is more engaging"
    first.save(update_fields=["title"])
    second = _study(tmp_path, n=1, slug="wf-two")
    user = annotator_add(username="ann", password=PASSWORD, study=first)
    second.annotators.add(user)
    page = offline_page(browser, live_server, width=390, height=844)
    log_in(page, live_server, "ann", PASSWORD)
    page.goto(f"{live_server.url}/studies/")
    expect(page.get_by_role("link", name="Start").first).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "study-list-390.png"), full_page=True)
    problems = check_page(page, where="study list") + broken_words(page)
    assert not problems, "\n".join(problems)
    cells = page.locator("table.studies tbody tr").first.locator("td")
    widths = [cells.nth(i).bounding_box()["width"] for i in range(cells.count())]
    assert min(widths) >= 300, widths  # stacked: every part of the card spans the row


def test_save_changes_on_an_earlier_item_moves_the_address_bar_and_says_saved(live_server, browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    study = _study(tmp_path)
    annotator_add(username="ann", password=PASSWORD, study=study)
    page = offline_page(browser, live_server)
    _start(page, live_server, study, "ann")
    _answer(page, ALL_A)
    page.get_by_role("button", name="Submit and go to the next item").click()
    expect(page.locator(".progress-line .count")).to_have_text("1 of 3 done")
    page.get_by_role("link", name="Previous item").click()
    expect(page.locator("#editing")).to_be_visible()
    assert "/items/" in page.url
    _answer(page, {"q1": ("S", 2)})
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status").filter(has_text="Your changes to the earlier item are saved")).to_be_visible()
    expect(page).to_have_url(f"{live_server.url}/studies/{study.slug}/annotate/")
    page.reload()
    expect(page.get_by_role("button", name="Submit and go to the next item")).to_be_visible()
    expect(page.locator("#editing")).to_have_count(0)


@pytest.mark.parametrize("action", ["skip", "flag"])
def test_a_double_click_on_skip_or_send_the_report_sends_one_request(live_server, browser, tmp_path, action):  # noqa: F811
    from playwright.sync_api import expect

    study = _study(tmp_path)
    annotator_add(username="ann", password=PASSWORD, study=study)
    page = offline_page(browser, live_server)
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    _start(page, live_server, study, "ann")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and r.url.endswith(f"/{action}/") else None)
    if action == "skip":
        page.get_by_text("Cannot rate this item? Skip it").click()
        page.get_by_label("I cannot judge this item").check()
        button = page.get_by_role("button", name="Skip the item")
    else:
        page.get_by_text("Report a problem with this item to staff").click()
        page.get_by_label("What is wrong with this item?").fill("Response B repeats itself.")
        button = page.get_by_role("button", name="Send the report")
    # Hold the response back, so the second click lands while the first request is in flight.
    page.route(f"**/{action}/", lambda route: (page.wait_for_timeout(1500), route.continue_()))
    button.click()
    expect(button).to_be_disabled()  # while its request runs
    button.click(force=True)  # a second click on the disabled button sends nothing
    notice = "Item skipped" if action == "skip" else "staff will look at this item"
    expect(page.locator(".notice").first).to_contain_text(notice)
    page.wait_for_timeout(1500)  # a queued second request would have gone by now
    assert len(posts) == 1, posts
    assert not [m for m in console if "hx-disabled-elt" in m], console
    if action == "flag":
        assert Flag.objects.count() == 1


def test_the_staff_study_page_with_an_open_flag_fits_390px(live_server, browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    study = _study(tmp_path)
    annotator_add(username="ann", password=PASSWORD, study=study)
    User.objects.create_user("boss", password=PASSWORD, is_staff=True)
    page = offline_page(browser, live_server, width=390, height=844)
    _start(page, live_server, study, "ann")
    page.get_by_text("Report a problem with this item to staff").click()
    page.get_by_label("What is wrong with this item?").fill("Response B repeats itself.")
    page.get_by_role("button", name="Send the report").click()
    expect(page.locator(".notice").first).to_contain_text("staff will look at this item")

    boss = offline_page(browser, live_server, width=390, height=844)
    log_in(boss, live_server, "boss", PASSWORD)
    boss.goto(f"{live_server.url}/studies/{study.slug}/manage/")
    expect(boss.locator("#flags")).to_contain_text("Response B repeats itself.")
    boss.screenshot(path=str(SCREENSHOTS / "study-manage-flag-390.png"), full_page=True)
    assert horizontal_overflow(boss) == 0
    problems = check_page(boss, where="staff study page") + broken_words(boss)
    assert not problems, "\n".join(problems)


def test_the_systems_table_shows_every_metric_at_1280px(live_server, browser, staff):  # noqa: F811
    """The review's screenshot cut the table off after BERT-R: at 1280 px every column is in view."""
    _world(staff)
    page = offline_page(browser, live_server, width=1280)
    log_in(page, live_server, "admin", PASSWORD)
    page.goto(f"{live_server.url}/results/")
    box = page.locator(".scroll:has(table.results)")
    hidden = box.evaluate("el => el.scrollWidth - el.clientWidth")
    assert hidden <= 0, f"{hidden}px of the systems table lie outside its box"
    assert page.locator("table.results th").last.is_visible()
