"""100 participants enrol through one link at once, against a real gunicorn on PostgreSQL (issue 21).

gunicorn (2 gthread workers, 20 request threads: as deployed, fewer database connections than
clients; pytest's live server opens one per client and runs PostgreSQL out of connections)
serves the test database on a free loopback port. Each thread is its own browser-like client (``requests.Session``: its own cookies and CSRF
token) that opens the link, picks a display name, reads the instructions and rates items
through the HTML forms until the study sends it to its end page. The link's cap, the
participants and the items' overlap are then checked in the database.
"""
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter

import pytest
import requests
from django.db import connection
from django.db.models import Count, Q

from annotation.enrolment_models import Participant
from annotation.models import Assignment, Item
from annotation.services.links import crowd_settings_update, link_create
from tests.conftest import ROOT
from tests.factories import QKEYS, toy_study

CLIENTS, CAP, ITEMS, OVERLAP = 100, 80, 30, 3


@pytest.fixture
def pg_server(transactional_db):
    """A gunicorn serving the test's PostgreSQL database; yields its base URL."""
    if connection.vendor != "postgresql":
        pytest.skip("enrolment races are tested on PostgreSQL (set DATABASE_URL); SQLite serialises writers")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "grag_site.settings.test", "LOG_LEVEL": "WARNING",
           "DATABASE_URL": f"postgres://{db['USER'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"}
    env.pop("TEST_DATABASE_NAME", None)
    (ROOT / "var").mkdir(exist_ok=True)
    log = ROOT / "var" / f"test-gunicorn-enrol-{os.getpid()}.log"
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "grag_site.wsgi:application", "--workers", "2", "--threads", "10",
         "--worker-class", "gthread", "--bind", f"127.0.0.1:{port}", "--preload", "--timeout", "120",
         "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(base + "/healthz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    yield base
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    errors = [line for line in log.read_text().splitlines() if "Error" in line or "Traceback" in line]
    assert not errors, errors[:10]


def _csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def _participant(base: str, token: str, n: int, start: threading.Barrier, outcome: dict) -> None:
    s = requests.Session()
    # A connection per request: gunicorn closes idle keep-alive connections after 2 s, and a
    # client reusing one just closed would see a reset that is no answer of the app's.
    s.headers["Connection"] = "close"
    page = s.get(f"{base}/join/{token}/", timeout=120)
    start.wait()
    if page.status_code != 200:  # the cap was reached before this client even saw the form
        outcome[n] = page.status_code
        return
    r = s.post(f"{base}/join/{token}/", data={"display_name": f"Volunteer {n}", "csrfmiddlewaretoken": _csrf(page.text)},
               headers={"Referer": f"{base}/join/{token}/"}, timeout=120)
    if r.status_code != 200:
        outcome[n] = r.status_code
        return
    outcome[n] = "enrolled"
    # The instructions, then items until the study has none left for this participant.
    form = re.search(r'<form method="post" action="(/studies/[^"]+/)"', r.text)
    assert form is not None and "instructions" in r.text, r.text[:300]
    r = s.post(base + form.group(1), data={"csrfmiddlewaretoken": _csrf(r.text)}, headers={"Referer": r.url},
               timeout=120)
    for _ in range(ITEMS * 50):
        if 'id="participant-wait"' in r.text:
            # Every item open to them is reserved by others this moment: come back, as the wait page says.
            time.sleep(0.2)
            r = s.get(f"{base}/studies/crowd-race/annotate/", timeout=120)
            continue
        action = re.search(r'id="rating-form"[^>]*action="([^"]+)"', r.text)
        if action is None:
            break
        answers = {f"{q}-choice": "A" for q in QKEYS} | {f"{q}-confidence": "4" for q in QKEYS}
        r = s.post(base + action.group(1), data={**answers, "csrfmiddlewaretoken": _csrf(r.text)},
                   headers={"Referer": r.url}, timeout=120)
        assert r.status_code == 200, r.status_code
    assert 'id="participant-end"' in r.text, r.text[:300]


def test_a_hundred_participants_enrol_at_once_without_duplicates_cap_or_overlap_broken(pg_server, tmp_path):
    study = toy_study(tmp_path, n=ITEMS, overlap=OVERLAP, slug="crowd-race")
    crowd_settings_update(study=study, items_per_participant=2)
    link = link_create(study=study, max_participants=CAP)
    start = threading.Barrier(CLIENTS)
    outcome: dict[int, object] = {}
    errors: list[str] = []

    def run(n):
        try:
            _participant(pg_server, link.token, n, start, outcome)
        except Exception as exc:  # surfaced below
            errors.append(f"{n}: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors[:5]
    counts = Counter(outcome.values())
    assert counts == {"enrolled": CAP, 409: CLIENTS - CAP}, counts
    participants = Participant.objects.filter(study=study)
    assert participants.count() == CAP == participants.values("user").distinct().count()
    assert sorted(participants.values_list("display_name", flat=True)) == sorted(
        f"Volunteer {n}" for n, o in outcome.items() if o == "enrolled")
    # Every item has at most its overlap of completed (or live) assignments, and nobody rated one twice.
    live = Q(assignments__status=Assignment.Status.COMPLETED) | Q(assignments__status=Assignment.Status.RESERVED)
    per_item = Item.objects.filter(study=study).annotate(n=Count("assignments", filter=live)).values_list("n", flat=True)
    assert max(per_item) <= OVERLAP
    done = Assignment.objects.filter(item__study=study, status=Assignment.Status.COMPLETED)
    assert done.count() == min(CAP * 2, ITEMS * OVERLAP)
    assert done.values("item", "annotator").distinct().count() == done.count()
    study.refresh_from_db()
    assert not study.is_open  # every item reached its overlap: the study closed itself
