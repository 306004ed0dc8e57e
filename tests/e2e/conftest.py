"""Fixtures every browser test shares (Debian's Chromium through Playwright; docs/testing.md)."""
import pytest

from .browsing import launch


@pytest.fixture
def browser(monkeypatch):
    """A headless Chromium (``browsing.launch``), closed with the test's database connections after it."""
    from django.db import connections
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the test's ORM calls are
    # still plain synchronous calls, so Django's async-safety check is switched off for them.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            yield browser
        finally:
            browser.close()
            connections.close_all()
