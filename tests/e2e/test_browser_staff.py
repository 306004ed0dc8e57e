"""Staff pages in a real Chromium with no network: API docs, favicon, jobs, results, reports.

Every page is checked at 1280 and 390 px: axe-core finds no serious or critical violation, the
page is not wider than the window, and tables' header and body cells share x positions.
With DOCS_SCREENSHOTS=1 (``make screenshots``) the report, a job and a system page are saved
to docs/img/ at 1280 px.
"""
import pytest
from django.contrib.auth.models import User

from .browsing import log_in, needs_chromium, offline_page

pytestmark = [pytest.mark.browser, needs_chromium]
PASSWORD = "correct-horse-9"


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


# --- every staff page at 1280 and 390 px ------------------------------------------------------

def test_the_page_checks_catch_an_unlabelled_field_low_contrast_overflow_and_a_squeezed_table(browser):
    """The checks below can fail: each kind of fault on a hand-made page is reported."""
    from .browsing import check_page

    page = browser.new_context(viewport={"width": 390, "height": 800}).new_page()
    page.set_content("""<!doctype html><html lang="en"><head><title>t</title></head><body><main>
      <h1>Faults</h1><input type="text">
      <p style="color:#bbb;background:#fff">faint text</p>
      <div style="width:900px">wide</div>
      <table><thead style="display:block"><tr><th>Fleiss' kappa</th><th>alpha</th></tr></thead>
        <tbody><tr><td>0.21</td><td>0.74</td></tr></tbody></table></main></body></html>""")
    problems = "\n".join(check_page(page, where="faults"))
    assert "label" in problems and "color-contrast" in problems
    assert "wider than the window" in problems and "header x=" in problems


def _world(staff):
    """A dataset, two trained systems with metrics and responses, a finished pipeline with every
    stage, a study with human and LLM ratings: enough that each staff page has content."""
    from datetime import timedelta

    from django.utils import timezone

    from annotation.models import Rating
    from modeling.metrics import METRICS
    from modeling.models import Dataset, MetricResult, Response, System
    from tests.annotation.test_aggregation import B, C, S
    from tests.factories import ratings_create, samples_create, study_create
    from worker.models import Job
    from worker.pipeline import PipelinePlan, pipeline_create

    dataset = Dataset.objects.create(name="spc", kind=Dataset.Kind.SPC)
    plan = PipelinePlan(dataset="spc")
    samples = samples_create([dict(
        key=f"spc/test/c1/{i:02d}", agent_persona="I am a nurse. I have two dogs.",
        history=[{"role": "user", "text": f"I just got back from a {i + 5}-mile run with my dog."}],
        reference=f"My two dogs would love a {i + 5}-mile run!", generic_response="That sounds like a great day!")
        for i in range(25)], dataset=dataset)
    for split in ("train", "valid"):  # the pipeline's check wants what its stages read (worker/pipeline_check.py)
        samples_create([dict(key=f"spc/{split}/c2/{i:02d}", agent_persona="I am a nurse.",
                             history=[{"role": "user", "text": "Hi there."}], reference="Hello!",
                             generic_response="Hello, how are you?") for i in range(4)],
                       dataset=dataset, split=split, source_id=f"{split}-c2")
    figures = {"presft_hist": [0.317, 0.381, 0.235, 0.365, 17.444, 0.384, 0.709, 0.704, 0.704],
               "postgrag": [0.366, 0.438, 0.288, 0.423, 21.086, 0.403, 0.741, 0.734, 0.735]}
    systems = {}
    for method, values in figures.items():
        systems[method] = System.objects.create(
            name=plan.system_name(method), method=method, dataset=dataset, backbone="smollm2",
            status=System.Status.TRAINED if hasattr(System.Status, "TRAINED") else System.Status.NEW,
            config={"method": method, "lr": 1e-4, "alpha": 0.5, "beta": 0.01, "epochs": 1, "max_steps": 8,
                    "batch_size": 4, "checkpoint_dir": f"/srv/models/{plan.system_name(method)}"})
        for name, value in zip(METRICS, values):
            MetricResult.objects.create(system=systems[method], split="test", name=name, value=value)
        Response.objects.bulk_create([Response(system=systems[method], sample=s, text=f"{method} says {i}")
                                      for i, s in enumerate(samples)])
    parent, children = pipeline_create(plan=plan, user=staff)
    study = study_create(PipelinePlan(**parent.params).slug())  # the plan as run: its own study slug
    rows = []
    for i in range(6):
        for rater, choice in (("ann1", C), ("ann2", C if i % 2 else S), ("ann3", B if i % 3 == 0 else C)):
            for q in ("q1", "q2", "q3", "q4"):
                rows.append((f"item{i}", rater, q, choice, 4))
        for q in ("q1", "q2", "q3", "q4"):
            rows.append((f"item{i}", f"LLM-{study.slug}", q, C, 3, Rating.RaterKind.LLM))
    ratings_create(study, rows)
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=30)
    results = {
        Job.Kind.AUGMENT: {"dataset": "spc", "split": "train", "model": "smollm2", "samples": 64, "generated": 60,
                           "cached": 4, "already_done": 0, "empty": 0, "seconds": 212.4},
        Job.Kind.TRAIN: {"system": plan.system_name("postgrag"), "samples": 64, "valid_samples": 8, "steps": 8,
                         "best_valid_l_p": 3.2, "resumed": False, "best_dir": "/srv/models/spc-postgrag/best"},
        Job.Kind.GENERATE: {"system": plan.system_name("postgrag"), "split": "test", "created": 12, "existing": 0,
                            "responses": 12},
        Job.Kind.METRICS: {"system": plan.system_name("postgrag"), "split": "test", "samples": 12,
                           "corpus": {"bleu": 21.086, "rouge2": 0.288}, "rows_written": 120, "skipped": {}},
        Job.Kind.STUDY: {"study": study.slug, "study_id": study.pk, "items": 6},
        Job.Kind.JUDGE: {"run": f"LLM-{study.slug}", "items": 6, "verdicts": 48, "failed": 0,
                         "consistency": {"q1": 0.83}, "position_bias": {"q1": 0.04}},
    }
    for n, child in enumerate(children):
        Job.objects.filter(pk=child.pk).update(
            status=Job.Status.SUCCEEDED, started_at=start + timedelta(minutes=3 * n),
            finished_at=start + timedelta(minutes=3 * n + 2, seconds=41), result=results.get(child.kind, {}),
            progress_done=12, progress_total=12, worker_host="worker-1", device="cpu", attempts=1,
            log_tail="loaded smollm2\nstage done\n")
    Job.objects.filter(pk=parent.pk).update(status=Job.Status.RUNNING, started_at=start, progress_done=len(children) - 1,
                                            progress_total=len(children))
    running = children[-1]
    Job.objects.filter(pk=running.pk).update(status=Job.Status.RUNNING, finished_at=None, progress_done=20,
                                             progress_total=48, rate=0.41, eta_seconds=68.3)
    return {"plan": plan, "parent": parent, "children": children, "systems": systems, "study": study}


def _staff_pages(world) -> dict[str, str]:
    parent, children, systems, study = world["parent"], world["children"], world["systems"], world["study"]
    train = next(c for c in children if c.kind == "train")
    table = ("results/table/?systems=spc-presft_hist&systems=spc-postgrag&baseline=spc-presft_hist"
             "&challengers=spc-postgrag&split=test")
    return {
        "home": "",
        "jobs": "jobs/",
        "pipeline job": f"jobs/{parent.pk}/",
        "training stage": f"jobs/{train.pk}/",
        "launch a pipeline": "jobs/launch/pipeline/",
        "launch training": "jobs/launch/train/",
        "results": "results/",
        "system page": f"results/systems/{systems['postgrag'].pk}/",
        "table 3": table,
        "ablation": "results/ablation/?param=beta&metric=rouge2&split=test",
        "studies": "studies/",
        "study manage": f"studies/{study.slug}/manage/",
        "study planner": "planner/",
        "systems ranking": "systems/ranking/",
    }


@pytest.mark.parametrize("width", [1280, 390])
def test_every_staff_page_passes_axe_fits_the_window_and_aligns_its_tables(live_server, browser, staff, width):
    from .browsing import check_page

    world = _world(staff)
    page = offline_page(browser, live_server, width=width)
    log_in(page, live_server, "admin", PASSWORD)
    problems = []
    for name, path in _staff_pages(world).items():
        response = page.goto(f"{live_server.url}/{path}")
        assert response.status == 200, (name, response.status)
        problems += check_page(page, where=f"{name} at {width}px")
        # Every link on the page leads somewhere (no 404 or 500 behind a link).
        for href in set(page.eval_on_selector_all("main a[href]", "as => as.map(a => a.href)")):
            if href.startswith(live_server.url) and "/download" not in href and "logout" not in href:
                status = page.request.get(href, max_redirects=0).status
                if status >= 400:
                    problems.append(f"{name}: link {href} answers {status}")
    assert page.outside == [], page.outside
    assert not [f for f in page.failed if "favicon" in f], page.failed
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("width", [1280, 390])
def test_the_agreement_report_fits_the_window_and_aligns_its_tables(live_server, browser, staff, width):
    from .browsing import check_page

    world = _world(staff)
    page = offline_page(browser, live_server, width=width)
    log_in(page, live_server, "admin", PASSWORD)
    page.goto(f"{live_server.url}/studies/{world['study'].slug}/report/")
    assert check_page(page, where=f"report at {width}px") == []


def test_downloads_of_the_systems_table_and_table3_work_in_the_browser(live_server, browser, staff):
    import csv
    import io

    _world(staff)
    page = offline_page(browser, live_server)
    log_in(page, live_server, "admin", PASSWORD)
    page.goto(f"{live_server.url}/results/")
    with page.expect_download() as info:
        page.get_by_role("link", name="CSV").click()
    rows = list(csv.DictReader(io.StringIO(open(info.value.path()).read())))
    assert {r["system"] for r in rows} == {"spc-presft_hist", "spc-postgrag"}
    page.get_by_role("link", name="spc-postgrag").click()
    page.wait_for_url("**/results/systems/*/")
    assert page.get_by_role("heading", level=1).inner_text() == "spc-postgrag"


@pytest.mark.skipif(not __import__("os").environ.get("DOCS_SCREENSHOTS"),
                    reason="regenerates docs/img/*.png: run `make screenshots` (DOCS_SCREENSHOTS=1)")
def test_regenerate_docs_screenshots(live_server, browser, staff):
    """The report, a pipeline job and a system page at 1280 px, as docs/img/*.png (palette PNGs, small)."""
    from PIL import Image

    from .browsing import DOCS_IMG

    world = _world(staff)
    page = offline_page(browser, live_server, width=1280, height=860)
    log_in(page, live_server, "admin", PASSWORD)
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    shots = {
        "report.png": f"studies/{world['study'].slug}/report/",
        "job.png": f"jobs/{world['parent'].pk}/",
        "system.png": f"results/systems/{world['systems']['postgrag'].pk}/",
    }
    heights = {"system.png": 1500}  # down to its first responses beside the reference and R_G
    for name, path in shots.items():
        page.set_viewport_size({"width": 1280, "height": heights.get(name, 860)})
        page.goto(f"{live_server.url}/{path}")
        target = DOCS_IMG / name
        page.screenshot(path=str(target))  # the first screenful: what a reader sees on opening the page
        Image.open(target).convert("RGB").quantize(colors=128).save(target, optimize=True)
        assert target.stat().st_size < 200_000, f"{target} is {target.stat().st_size} bytes"
