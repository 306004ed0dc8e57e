"""The embedded SQLite default under 20 parallel annotators (issue 17, finding 8): zero 5xx.

A real gunicorn (gthread workers, 20 request threads in all) serves the test database on a free
loopback port; 20 API clients hit it at once through a barrier: 20 ``next`` requests, 20 pairs of
identical submits, then different submits until the study is done. Before WAL, immediate
transactions and a busy timeout, 7 of 20 parallel ``next`` requests answered 500 "database is locked".
"""
from __future__ import annotations

import os
import threading
from collections import Counter

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from annotation import services
from annotation.models import Assignment, Rating
from common.web_server import Gunicorn
from tests.factories import jsonl_write

from ..conftest import ROOT
from .conftest import BASELINE, CHALLENGER, QKEYS, study_lines

N = 20


@pytest.fixture
def sqlite_server(transactional_db):
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default is SQLite; this run uses another database")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "grag_site.settings.test",
           "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}", "LOG_LEVEL": "WARNING"}
    env.pop("TEST_DATABASE_NAME", None)
    server = Gunicorn(env=env, log=ROOT / "var" / f"test-gunicorn-{os.getpid()}.log", workers=2, threads=N // 2,
                      start_timeout=120)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield server.base_url, server.log
    server.stop()


def _parallel(fn, args_list):
    barrier = threading.Barrier(len(args_list))
    results: list = [None] * len(args_list)

    def run(i, args):
        barrier.wait(timeout=60)
        try:
            results[i] = fn(*args)
        except Exception as exc:  # noqa: BLE001 (reported by the test)
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    return results


def test_twenty_parallel_annotators_on_sqlite_get_no_server_error(sqlite_server, tmp_path):
    import httpx

    base, log = sqlite_server
    study, _ = services.study_import_jsonl(
        path=jsonl_write(tmp_path / "s.jsonl", study_lines(16, tag="lite")), slug="lite", baseline=BASELINE,
        challenger=CHALLENGER, overlap=3,
    )
    users = [services.annotator_add(username=f"lite{i:02d}", password=None, study=study) for i in range(N)]
    clients = [httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Token {Token.objects.create(user=u).key}"})
               for u in users]
    statuses: Counter = Counter()
    acked: set[tuple[str, str, str]] = set()

    def body(k: int, item: str) -> dict:
        return {"answers": [{"question": q, "choice": "ABS"[(k + j + len(item)) % 3], "confidence": 1 + (k + j) % 5}
                            for j, q in enumerate(QKEYS)]}

    def step(k: int, twice: bool):
        r = clients[k].post("/api/studies/lite/next/")
        got = [r.status_code]
        if r.status_code != 200:
            return got
        item = r.json()["item"]
        def send():
            return (clients[k].post(f"/api/studies/lite/items/{item}/ratings/", json=body(k, item)))
        answers = [send()] + ([send()] if twice else [])
        got += [a.status_code for a in answers]
        if any(a.status_code in (200, 201) for a in answers):
            acked.update((item, users[k].username, q) for q in QKEYS)
        return got

    # 20 parallel `next`; then each annotator's identical submit twice (a double click), all at once.
    nexts = _parallel(lambda k: clients[k].post("/api/studies/lite/next/"), [(k,) for k in range(N)])
    assert all(not isinstance(r, Exception) for r in nexts), nexts
    statuses.update(r.status_code for r in nexts)
    items = [r.json()["item"] for r in nexts if r.status_code == 200]
    pairs = [(k, item) for k, item in enumerate(items)] * 2
    subs = _parallel(lambda k, item: clients[k].post(f"/api/studies/lite/items/{item}/ratings/", json=body(k, item)), pairs)
    assert all(not isinstance(r, Exception) for r in subs), subs
    statuses.update(r.status_code for r in subs)
    for (k, item), r in zip(pairs, subs):
        if r.status_code in (200, 201):
            acked.update((item, users[k].username, q) for q in QKEYS)
    # Then everyone works on in parallel, different answers each, until the study is done.
    for _round in range(6):
        results = _parallel(step, [(k, _round % 2 == 0) for k in range(N)])
        assert all(not isinstance(r, Exception) for r in results), results
        for got in results:
            statuses.update(got)

    server_errors = {code: n for code, n in statuses.items() if code >= 500}
    assert not server_errors, f"server errors: {server_errors}\n{log.read_text()[-3000:]}"
    assert set(statuses) <= {200, 201, 204}, statuses
    # Nothing lost, nothing twice, no item past its overlap.
    stored = set(Rating.objects.filter(item__study=study, is_current=True).values_list("item__public_id", "rater", "question"))
    assert acked <= stored and len(acked) > N * 4
    rows = list(Rating.objects.filter(item__study=study).values_list("item_id", "rater", "question"))
    assert len(rows) == len(set(rows))
    done = Counter(Assignment.objects.filter(item__study=study, status="completed").values_list("item_id", flat=True))
    assert max(done.values()) <= 3
    for c in clients:
        c.close()
