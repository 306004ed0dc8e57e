"""A small but complete world for the hardening tests: two studies, their annotators, staff, and
one row of every model the admin shows, all created through the real services.

System names, model ids and item keys are distinctive strings, and database ids start at
distinctive numbers, so that a test can search everything an annotator fetched for them
(blinding, paper section 5.5) without matching by accident.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from rest_framework.authtoken.models import Token

from annotation import services
from annotation.models import Assignment, Item, Rating, Study
from judge.models import JudgeRun, JudgeVerdict
from modeling.models import Conversation, Dataset, MetricResult, Response, Sample, System
from tests.factories import answer_all, study_imported, study_line
from worker.models import Job

BASELINE = "secretbase-presft-hist-run7"
CHALLENGER = "secretchal-postgrag-run9"
BASELINE_BACKBONE = "facebook/bart-secretbackbone"
CHALLENGER_BACKBONE = "HuggingFaceTB/SmolLM2-135M-secretinstruct"
QKEYS = ("q1", "q2", "q3", "q4")
# First database id of each table the world fills: large, distinctive numbers that never occur
# in a page by accident, so a leaked id is found by a plain substring search.
ID_BASE = 7_310_000


def ids_bump(*models, start: int = ID_BASE) -> None:
    """Make the next id of each model's table ``start`` + a per-table offset (PostgreSQL and SQLite)."""
    with connection.cursor() as cursor:
        for i, model in enumerate(models):
            table, value = model._meta.db_table, start + i * 1000
            if connection.vendor == "postgresql":
                cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, value])
            elif connection.vendor == "sqlite":
                cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
                cursor.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, value])


def study_lines(n: int, *, tag: str, baseline: str = BASELINE, challenger: str = CHALLENGER) -> list[dict]:
    return [study_line(
        key=f"secretkey-{tag}-{i:03d}", persona=f"I have {i + 2} cats.\nI love hiking in the hills.",
        history=[
            {"role": "user", "text": f"Hi! What did you do today ({tag} {i})?"},
            {"role": "agent", "text": "I went for a long walk."},
            {"role": "user", "text": "Nice, where to?"},
        ],
        generic_response="I went to a park nearby.",
        responses={
            baseline: f"I walked to the park, it was nice ({tag} {i}).",
            challenger: f"I hiked up the hills with my {i + 2} cats watching from home ({tag} {i}).",
        },
    ) for i in range(n)]


def answers(choice: str = "S", confidence: int = 4) -> list[services.Answer]:
    return answer_all(choice, confidence)


@dataclass
class World:
    study_x: Study
    study_y: Study
    ann_x: User
    ann_y: User
    staff: User
    item_x: Item  # reserved by ann_x right now
    item_y: Item  # reserved by ann_y right now
    job: Job
    dataset: Dataset
    system: System
    objects: dict = field(default_factory=dict)  # admin model label -> a pk


@pytest.fixture
def world(db, tmp_path) -> World:
    ids_bump(Item, Assignment, Rating, Study, System, Sample, Response, Conversation, Dataset, Job, MetricResult, User)
    study_x, _ = study_imported(tmp_path / "x.jsonl", study_lines(6, tag="x"), slug="study-x", baseline=BASELINE,
                                challenger=CHALLENGER, overlap=3, seed=11)
    study_y, _ = study_imported(tmp_path / "y.jsonl", study_lines(3, tag="y"), slug="study-y", baseline=BASELINE,
                                challenger=CHALLENGER, overlap=3, seed=12)
    ann_x = services.annotator_add(username="ann-x", password="pw-ann-x-123", study=study_x)
    ann_y = services.annotator_add(username="ann-y", password="pw-ann-y-123", study=study_y)
    staff = User.objects.create_user("staffer", password="pw-staff-123", is_staff=True)
    # Staff as labs run them: is_staff with every model permission, not a superuser, so a view
    # that checks is_superuser instead of is_staff would show up here.
    staff.user_permissions.set(Permission.objects.all())
    Token.objects.get_or_create(user=staff)

    # ann_x has rated one item (a Rating exists) and holds a reservation of the next.
    done = services.assignment_next(study=study_x, annotator=ann_x)
    services.rating_submit(assignment=done, answers=answers())
    item_x = services.assignment_next(study=study_x, annotator=ann_x).item
    item_y = services.assignment_next(study=study_y, annotator=ann_y).item

    dataset = Dataset.objects.create(name="secretdataset", kind=Dataset.Kind.JSONL)
    conversation = Conversation.objects.create(dataset=dataset, split="test", source_id="secretconv-1", turns=[])
    sample = Sample.objects.create(
        dataset=dataset, conversation=conversation, split="test", turn_index=1, key="secretdataset/test/secretconv-1/1",
        history=[{"role": "user", "text": "Hi"}], reference="Hello.",
    )
    system = System.objects.create(name=BASELINE, method=System.Method.PRESFT_HIST, dataset=dataset, backbone=BASELINE_BACKBONE)
    System.objects.create(name=CHALLENGER, method=System.Method.POSTGRAG, dataset=dataset, backbone=CHALLENGER_BACKBONE)
    response = Response.objects.create(system=system, sample=sample, text="Hello there.")
    metric = MetricResult.objects.create(system=system, split="test", name="char_f1", value=0.5)
    job = Job.objects.create(kind=Job.Kind.PING, status=Job.Status.SUCCEEDED, created_by=staff)
    group = Group.objects.create(name="annotators")
    run = JudgeRun.objects.create(name="LLM-secretjudge", study=study_x, model_id="secret/judge-model", prompt_version="v1")
    verdict = JudgeVerdict.objects.create(run=run, item=item_x, question="q1", baseline_side="A",
                                          probabilities={"A": 0.5, "B": 0.3, "S": 0.2})

    objects = {
        "auth.group": group.pk, "auth.user": ann_x.pk, "authtoken.tokenproxy": staff.pk,
        "modeling.dataset": dataset.pk, "modeling.conversation": conversation.pk, "modeling.sample": sample.pk,
        "modeling.system": system.pk, "modeling.response": response.pk, "modeling.metricresult": metric.pk,
        "annotation.study": study_x.pk, "annotation.item": item_x.pk,
        "annotation.assignment": Assignment.objects.filter(annotator=ann_x).first().pk,
        "annotation.rating": Rating.objects.filter(rater="ann-x").first().pk, "worker.job": job.pk,
        "judge.judgerun": run.pk, "judge.judgeverdict": verdict.pk,
    }
    return World(study_x=study_x, study_y=study_y, ann_x=ann_x, ann_y=ann_y, staff=staff, item_x=item_x, item_y=item_y,
                 job=job, dataset=dataset, system=system, objects=objects)
