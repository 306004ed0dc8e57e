"""Helpers for the staff-page browser tests: a Chromium with no network but the live server,
and the checks every staff page must pass (axe-core, no horizontal overflow, aligned tables).

Chromium is Debian's (/usr/bin/chromium), never a downloaded one; axe-core comes from the
project's own ``npm ci`` (package.json) and is injected from node_modules.
"""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
DOCS_IMG = ROOT / "docs" / "img"
WIDTHS = (1280, 390)

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's Chromium is not installed: run `apt-get install -y chromium`")


def launch(pw):
    return pw.chromium.launch(
        executable_path=str(CHROMIUM),
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run"],
    )


def offline_page(browser, live_server, *, width: int = 1280, height: int = 900):
    """A page whose every request outside the live server is refused; ``page.outside`` lists them."""
    context = browser.new_context(viewport={"width": width, "height": height})
    outside: list[str] = []

    def route(route):
        if route.request.url.startswith(live_server.url) or route.request.url.startswith(("data:", "blob:")):
            return route.continue_()
        outside.append(route.request.url)
        return route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(45_000)  # a loaded shared CPU
    page.outside = outside
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.failed = failed
    return page


def log_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def axe_violations(page, *, impacts=("serious", "critical")) -> list[str]:
    """Run axe-core in the page; return 'rule: target' for each violation of these impacts."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci --no-audit --no-fund` (make browser does)")
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {node['target']} {node.get('failureSummary', '')[:160]}"
        for v in result["violations"] if v["impact"] in impacts for node in v["nodes"]
    ]


def horizontal_overflow(page) -> int:
    """How many CSS pixels the document is wider than the window (0 when it fits)."""
    return page.evaluate("Math.max(0, document.documentElement.scrollWidth - window.innerWidth)")


def misaligned_tables(page, selector: str = "main table") -> list[str]:
    """Tables whose header cells and first body row's cells do not share x positions.

    Compares each column's left edge and width (tolerance 1 px) where the header row and the body
    row have the same number of cells (a colspan row is skipped); reports 'table i: ...'.
    """
    return page.evaluate(
        """(selector) => {
        const bad = [];
        document.querySelectorAll(selector).forEach((table, i) => {
          const head = table.querySelector('thead tr:last-child');
          const body = Array.from(table.querySelectorAll('tbody tr')).find(
            r => head && r.children.length === head.children.length);
          if (!head || !body) return;
          const hidden = head.parentElement.getBoundingClientRect();
          if (hidden.height <= 1 || hidden.width <= 1) return;  // header only for screen readers: rows are cards
          Array.from(head.children).forEach((th, c) => {
            const a = th.getBoundingClientRect(), b = body.children[c].getBoundingClientRect();
            if (Math.abs(a.left - b.left) > 1 || Math.abs(a.width - b.width) > 1)
              bad.push(`table ${i} column ${c} '${th.textContent.trim()}': header x=${a.left.toFixed(0)} w=${a.width.toFixed(0)}, body x=${b.left.toFixed(0)} w=${b.width.toFixed(0)}`);
          });
        });
        return bad;
    }""",
        selector,
    )


def broken_words(page, selector: str = "main td, main th, main .actions", *, longest: int = 30) -> list[str]:
    """Words of at most ``longest`` characters that the layout breaks across lines inside these
    elements (a squeezed table cell shows its words one letter per line); 'word' in 'cell text'.

    Measured in the page: a word's text range that has more than one line box is broken. A word
    here runs between the places a line may break anyway (spaces, hyphens, dashes, ellipses, slashes).
    """
    return page.evaluate(
        """([selector, longest]) => {
        const bad = [];
        document.querySelectorAll(selector).forEach(el => {
          if (!el.getClientRects().length) return;
          for (let up = el; up; up = up.parentElement) {  // visually hidden (sr-only): not laid out for reading
            const box = up.getBoundingClientRect();
            if (box.width <= 1 || box.height <= 1) return;
          }
          const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
          for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            // Words between the places a line may break anyway: spaces, hyphens, dashes, ellipses, slashes.
            for (const m of node.data.matchAll(/[^\\s\\-\\u2010-\\u2015\\u2026\\/]+/g)) {
              if (m[0].length < 2 || m[0].length > longest) continue;
              const range = document.createRange();
              range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
              const tops = new Set(Array.from(range.getClientRects()).filter(r => r.width > 0).map(r => Math.round(r.top)));
              if (tops.size > 1) bad.push(`'${m[0]}' in '${el.textContent.trim().slice(0, 60)}'`);
            }
          }
        });
        return bad;
    }""",
        [selector, longest],
    )


def check_page(page, *, where: str) -> list[str]:
    """Every staff-page rule at the current width; returns the problems (empty when it passes)."""
    problems = [f"{where}: axe {v}" for v in axe_violations(page)]
    if (px := horizontal_overflow(page)) > 0:
        problems.append(f"{where}: page is {px}px wider than the window")
    problems += [f"{where}: {m}" for m in misaligned_tables(page)]
    return problems
