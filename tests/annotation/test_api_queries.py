"""SQL statements per annotator API call: a fixed number, whatever the size of the study (issue 17).

``POST next`` and ``POST ratings`` are the two requests of the annotator-load target (100
annotators, p95 < 100 ms on 2 cores; benchmarks/annotate_load.py, docs/results.md). A statement
per item, per question or per earlier assignment would make every request slower as a study
grows; this counts them on a small and a ten times larger study, at every step of a few rounds.
"""
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.annotation.test_api import answers
from tests.factories import annotators_create, toy_study

pytestmark = pytest.mark.django_db

# Statements per call today (each a hand-written or ORM statement; BEGIN/COMMIT or savepoints
# included): next = token, study, annotator lock, their assignments, open items, other raters'
# sides, insert, questions, progress, and whether the annotator is a crowd participant of the
# study (issue 21: their quota, time limit and onboarding); submit = token, study, item, assignment lock, questions,
# current ratings, update, insert, progress, the participant check and whether the study has a
# link (a crowd study closes itself when complete). A change that adds one should say why.
MOST = {"next": 12, "submit": 13}


def _statements_per_call(tmp_path, *, items: int, slug: str) -> dict[str, list[int]]:
    study = toy_study(tmp_path, n=items, overlap=2, slug=slug)
    clients = []
    for user in annotators_create(study, 3, prefix=f"{slug}-"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
        clients.append(client)
    counts: dict[str, list[int]] = {"next": [], "submit": []}
    for _round in range(2):
        for client in clients:
            with CaptureQueriesContext(connection) as captured:
                response = client.post(f"/api/studies/{slug}/next/")
            assert response.status_code == 200, response.content
            counts["next"].append(len(captured))
            item = response.json()["item"]
            with CaptureQueriesContext(connection) as captured:
                response = client.post(f"/api/studies/{slug}/items/{item}/ratings/", answers(), format="json")
            assert response.status_code == 201, response.content
            counts["submit"].append(len(captured))
    return counts


def test_next_and_submit_run_as_many_statements_on_a_large_study_as_on_a_small_one(tmp_path):
    small = _statements_per_call(tmp_path, items=4, slug="small")
    large = _statements_per_call(tmp_path, items=40, slug="large")
    for call in ("next", "submit"):
        # The same number at every step (the first request of a client included) and on both studies.
        assert set(small[call]) == set(large[call]) and len(set(large[call])) == 1, (call, small, large)
        assert large[call][0] <= MOST[call], (call, large[call][0])
