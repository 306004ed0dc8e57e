"""Many annotators at once on PostgreSQL: no item over its overlap, nothing stored twice.

Threads with their own database connections and committed transactions (transactional_db),
so the row locks in ``assignment_next`` and ``rating_submit`` really contend.
"""
import threading
from collections import Counter

import pytest
from django.db import connection
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Assignment, Rating
from tests.factories import QKEYS, annotators_create, answer_all, toy_study


@pytest.fixture
def pg(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("row-lock concurrency is tested on PostgreSQL (set DATABASE_URL); SQLite serialises writers")


def run_threads(target, args_list):
    errors = []

    def wrap(*args):
        try:
            target(*args)
        except Exception as exc:  # surfaced below: a thread's failure fails the test
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=wrap, args=args) for args in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors


def test_concurrent_annotators_over_the_api_never_exceed_the_overlap(pg, tmp_path):
    study = toy_study(tmp_path, n=12, overlap=3, slug="race")
    users = annotators_create(study, 10)
    start = threading.Barrier(len(users))
    body = {"answers": [{"question": q, "choice": "B", "confidence": 4} for q in QKEYS]}

    def annotate(user):
        client = APIClient()
        client.force_authenticate(user)
        start.wait()
        while True:
            response = client.post("/api/studies/race/next/")
            if response.status_code == 204:
                return
            assert response.status_code == 200, response.content
            item = response.json()["item"]
            # Every client submits twice (a retry): the second stores nothing.
            first = client.post(f"/api/studies/race/items/{item}/ratings/", body, format="json")
            second = client.post(f"/api/studies/race/items/{item}/ratings/", body, format="json")
            assert (first.status_code, second.status_code) == (201, 200), (first.content, second.content)

    run_threads(annotate, [(u,) for u in users])
    completed = Counter(Assignment.objects.filter(status="completed").values_list("item_id", flat=True))
    assert len(completed) == 12 and set(completed.values()) == {3}
    pairs = list(Assignment.objects.values_list("item_id", "annotator_id"))
    assert len(pairs) == len(set(pairs))
    assert Rating.objects.count() == 12 * 3 * 4 == Rating.objects.filter(is_current=True).count()
    for u in users:
        sides = list(Assignment.objects.filter(annotator=u, status="completed").values_list("baseline_side", flat=True))
        assert abs(sides.count("A") - sides.count("B")) <= services.SIDE_BALANCE_BOUND


def test_simultaneous_double_submit_and_double_next_store_once(pg, tmp_path):
    study = toy_study(tmp_path, n=3, overlap=1, slug="dbl")
    (user,) = annotators_create(study, 1)
    barrier = threading.Barrier(4)
    got = []

    def ask():
        barrier.wait()
        got.append(services.assignment_next(study=study, annotator=user).pk)

    run_threads(ask, [()] * 4)
    assert len(set(got)) == 1 and Assignment.objects.count() == 1
    assignment = Assignment.objects.get()
    barrier = threading.Barrier(4)

    def submit():
        barrier.wait()
        services.rating_submit(assignment=assignment, answers=answer_all("A", 5))

    run_threads(submit, [()] * 4)
    assert Rating.objects.count() == 4
    assignment.refresh_from_db()
    assert assignment.status == "completed"
