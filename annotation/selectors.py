"""Reads of annotation data that take more than one query: payloads, progress, quality figures.

What an annotator can fetch goes through ``item_payload`` only: it carries the opaque
``public_id`` and the two texts in the order stored for this annotator, never a system name,
an item key, a database id or which side is the baseline (blinding, section 5.5).
"""
from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from .enrolment_models import CrowdSettings, Participant
from .giveaways import study_giveaways
from .keys import key_normalise
from .models import RATED_KINDS, TRAP_KINDS, Assignment, Item, Question, Rating, Study
from .participants import ratings_counted


def annotator_studies(*, user) -> QuerySet[Study]:
    """The studies the user annotates (staff see only those they were given, too)."""
    if not user.is_authenticated:
        return Study.objects.none()
    return Study.objects.filter(annotators=user).order_by("-created_at")


_STUDY_FOR_ANNOTATOR_SQL = """
SELECT s.* FROM {study} s
WHERE s.slug = %s AND EXISTS (SELECT 1 FROM {member} m WHERE m.{member_study} = s.id AND m.{member_user} = %s)
""".format(
    study=Study._meta.db_table, member=Study.annotators.through._meta.db_table,
    member_study=Study.annotators.through._meta.get_field("study").column,
    member_user=Study.annotators.through._meta.get_field("user").column,
)


def study_for_annotator(*, user, slug: str) -> Study | None:
    """The study ``slug`` if ``user`` annotates it, else None (callers answer 404).

    Hand-written SQL: every annotator request starts here, and the ORM's many-to-many join
    cost 0.8 ms of CPU to build per request (issue 17's load target; docs/results.md).
    """
    if not user.is_authenticated:
        return None
    return next(iter(Study.objects.raw(_STUDY_FOR_ANNOTATOR_SQL, [slug, user.pk])), None)


_QUESTIONS_SQL = f'SELECT key, label, text FROM {Question._meta.db_table} WHERE study_id = %s ORDER BY "order", key'


def study_questions(*, study: Study) -> list[dict[str, str]]:
    """The study's questions in their order (``Question.Meta.ordering``): [{"key", "label", "text"}].

    One plain statement, not a queryset: both annotator API calls need them (issue 17's load target).
    """
    with connection.cursor() as cursor:
        cursor.execute(_QUESTIONS_SQL, [study.pk])
        return [{"key": key, "label": label, "text": text} for key, label, text in cursor.fetchall()]


def assignment_for_annotator(*, study: Study, annotator, public_id: str) -> Assignment | None:
    """The annotator's assignment of the item with this opaque id, or None (callers answer 404)."""
    return (
        Assignment.objects.select_related("item", "item__study")
        .filter(item__study=study, item__public_id=public_id, annotator=annotator)
        .first()
    )


def live_sql(alias: str) -> str:
    """SQL twin of ``services.assignment.live_q``: assignment ``alias`` holds a slot (completed, or reserved and
    not expired). For the hand-written statements on the annotator's hot path; its parameters
    come from ``sql_params``."""
    return f"({alias}.status = %(completed)s OR ({alias}.status = %(reserved)s AND {alias}.expires_at > %(now)s))"


def sql_params(*, study: Study, annotator, now, **extra: Any) -> dict[str, Any]:
    """The named parameters those statements share: ids, the time, and the enum values they test."""
    return {
        "study": study.pk, "me": annotator.pk, "now": now, "overlap": study.overlap,
        "completed": Assignment.Status.COMPLETED.value, "reserved": Assignment.Status.RESERVED.value,
        "skipped": Assignment.Status.SKIPPED.value,
        "normal": Item.Kind.NORMAL.value, "gold": Item.Kind.GOLD.value, **extra,
    }


_PROGRESS_SQL = """
SELECT COALESCE(SUM(mine_done), 0), COALESCE(SUM(mine_reserved), 0),
       COUNT(*) FILTER (WHERE rated AND mine = 0 AND n < %(overlap)s),
       (SELECT c.items_per_participant FROM {crowd} c JOIN {participant} p ON p.study_id = c.study_id
        WHERE c.study_id = %(study)s AND p.user_id = %(me)s)
FROM (
    SELECT i.kind IN (%(normal)s, %(gold)s) AS rated,
           COUNT(a.id) FILTER (WHERE a.status <> %(skipped)s) AS n,
           COUNT(a.id) FILTER (WHERE a.annotator_id = %(me)s) AS mine,
           COUNT(a.id) FILTER (WHERE a.annotator_id = %(me)s AND a.status = %(completed)s) AS mine_done,
           COUNT(a.id) FILTER (WHERE a.annotator_id = %(me)s AND a.status = %(reserved)s) AS mine_reserved
    FROM {item} i LEFT JOIN {assignment} a
      ON a.item_id = i.id AND ({live_a} OR (a.annotator_id = %(me)s AND a.status = %(skipped)s))
    WHERE i.study_id = %(study)s
    GROUP BY i.id
) per_item
""".format(item=Item._meta.db_table, assignment=Assignment._meta.db_table, live_a=live_sql("a"),
           crowd=CrowdSettings._meta.db_table, participant=Participant._meta.db_table)


def annotator_progress(*, study: Study, annotator) -> dict[str, int]:
    """Items done and the most this annotator can do: done plus the items still open to them.

    Done and reserved count the annotator's live assignments (quality-control items included);
    open items are rated items they hold no live assignment of and never skipped, with fewer
    than ``overlap`` live assignments (a skipped assignment is not live: its slot is free). For a
    crowd participant the total is at most the study's ``items_per_participant`` (docs/crowd.md). One statement, not three ORM queries: it runs on every ``next`` and
    submit, the two requests of the annotator-load target (p95 < 100 ms with 50 annotators).
    """
    with connection.cursor() as cursor:
        cursor.execute(_PROGRESS_SQL, sql_params(study=study, annotator=annotator, now=timezone.now()))
        # int(): PostgreSQL's SUM of counts is numeric (Decimal), which JSON payloads cannot carry.
        done, reserved, open_items, quota = cursor.fetchone()
    done, total = int(done), int(done) + int(reserved) + int(open_items)
    if quota is not None:  # a crowd participant rates at most the study's items per participant
        total = min(int(quota), total)
    return {"done": done, "total": total}


def item_payload(*, assignment: Assignment) -> dict[str, Any]:
    """What the annotator sees of an item, blinded: response A and B in the order stored for them."""
    item = assignment.item
    study = item.study
    if assignment.baseline_side == "A":
        response_a, response_b = item.baseline_response, item.challenger_response
    else:
        response_a, response_b = item.challenger_response, item.baseline_response
    return {
        "item": item.public_id,
        "persona": item.persona,
        "history": [{"role": t.get("role", ""), "text": t.get("text", "")} for t in item.history or []],
        "generic_response": item.generic_response,
        "response_a": response_a,
        "response_b": response_b,
        "questions": study_questions(study=study),
        "progress": annotator_progress(study=study, annotator=assignment.annotator),
    }


def assignment_current_answers(*, assignment: Assignment) -> dict[str, dict[str, Any]]:
    """The annotator's current answers to this item as shown to them: {q: {"choice", "confidence"}}."""
    return {
        r.question: {"choice": r.shown_choice, "confidence": r.confidence}
        for r in Rating.objects.filter(
            item=assignment.item, annotator=assignment.annotator, rater_kind=Rating.RaterKind.HUMAN, is_current=True
        )
    }


# --------------------------------------------------------------------------- staff


def study_items_state(*, study: Study) -> list[dict[str, Any]]:
    """Each study item (rated kinds and traps, ``models.RATED_KINDS``) with its assignment state, for staff:
    completed, live reserved, expired and skipped counts. Onboarding items are not study items
    (``study_onboarding_items``)."""
    now = timezone.now()
    rows = (
        Item.objects.filter(study=study, kind__in=RATED_KINDS + TRAP_KINDS)
        .annotate(
            completed=Count("assignments", filter=Q(assignments__status=Assignment.Status.COMPLETED)),
            reserved=Count(
                "assignments",
                filter=Q(assignments__status=Assignment.Status.RESERVED, assignments__expires_at__gt=now),
            ),
            expired=Count(
                "assignments",
                filter=Q(assignments__status=Assignment.Status.EXPIRED)
                | Q(assignments__status=Assignment.Status.RESERVED, assignments__expires_at__lte=now),
            ),
            skipped=Count("assignments", filter=Q(assignments__status=Assignment.Status.SKIPPED)),
        )
        .order_by("key")
    )
    return [
        {
            "key": i.key, "item": i.public_id, "kind": i.kind, "completed": i.completed, "reserved": i.reserved,
            "expired": i.expired, "skipped": i.skipped,
            "state": "done" if i.completed >= study.overlap else ("in progress" if i.completed or i.reserved else "open"),
        }
        for i in rows
    ]


def study_onboarding_items(*, study: Study) -> list[dict[str, Any]]:
    """The study's own onboarding items (kind ONBOARDING) for staff: [{"key", "item", "gold"}], by key.

    Shown only in a participant's onboarding; in no count, no items table and no judge run (docs/crowd.md)."""
    return [{"key": i.key, "item": i.public_id, "gold": i.gold_answers}
            for i in study.items.filter(kind=Item.Kind.ONBOARDING).order_by("key")]


def study_ratings(*, study: Study, include_quality_items: bool = False, rater_kind: str | None = None) -> QuerySet[Rating]:
    """The current ratings of a study that count (``participants.ratings_counted``); gold and trap items are
    left out unless asked for."""
    qs = ratings_counted(study=study).select_related("item")
    if not include_quality_items:
        qs = qs.filter(item__kind=Item.Kind.NORMAL)
    if rater_kind:
        qs = qs.filter(rater_kind=rater_kind)
    return qs.order_by("item__key", "rater", "question")


def study_votes_rows(*, study: Study) -> list[dict[str, Any]]:
    """Rows of ``export_votes`` (the same columns ``import_votes`` reads, the rater's comment last), current ratings only;
    item keys in ``annotation.keys.key_normalise`` form, so the file imports again."""
    return [
        {
            "item_key": key_normalise(r.item.key), "rater": r.rater, "rater_kind": r.rater_kind, "question": r.question,
            "choice": r.choice, "confidence": r.confidence, "comment": r.comment,
        }
        for r in study_ratings(study=study)
    ]


def annotator_quality_control(*, study: Study) -> dict[str, dict[str, Any]]:
    """Gold / identical-pair pass rate and repeated-pair consistency per human annotator.

    The one implementation of these figures: ``annotator_quality`` (staff page and API) and the
    agreement report (``reports.quality``) both take them from here.

    - pass rate: share of answers to gold and identical-pair items that match the known answer;
    - consistency: share of answers to a repeated pair (sides swapped) equal to the annotator's
      current answer to the original, compared canonically.

    Reads only the ratings of gold and trap items and of the items repeated (few). Returns
    {rater: {"pass_rate", "checks", "consistency", "repeats"}} for the annotators who answered a
    gold or trap item; see ``QUALITY_CONTROL_NONE`` for the others.
    """
    human = Rating.objects.filter(item__study=study, is_current=True, rater_kind=Rating.RaterKind.HUMAN).order_by()
    rows = list(
        human.exclude(item__kind=Item.Kind.NORMAL)
        .values_list("rater", "item__kind", "item__gold_answers", "item__repeat_of_id", "question", "choice")
    )
    if not rows:
        return {}
    repeated = {repeat_of for _, kind, _, repeat_of, _, _ in rows if kind == Item.Kind.TRAP_REPEAT}
    original = {
        (rater, item_id, question): choice
        for rater, item_id, question, choice in human.filter(item_id__in=repeated).values_list(
            "rater", "item_id", "question", "choice")
    } if repeated else {}
    counts: dict[str, list[int]] = {}
    for rater, kind, gold, repeat_of, question, choice in rows:
        tally = counts.setdefault(rater, [0, 0, 0, 0])  # checks, passed, repeats, consistent
        if kind in (Item.Kind.GOLD, Item.Kind.TRAP_IDENTICAL) and question in (gold or {}):
            tally[0] += 1
            tally[1] += gold[question] == choice
        elif kind == Item.Kind.TRAP_REPEAT and (rater, repeat_of, question) in original:
            tally[2] += 1
            tally[3] += original[(rater, repeat_of, question)] == choice
    return {
        rater: {"pass_rate": passed / checks if checks else None, "checks": checks,
                "consistency": consistent / repeats if repeats else None, "repeats": repeats}
        for rater, (checks, passed, repeats, consistent) in counts.items()
    }


QUALITY_CONTROL_NONE = {"pass_rate": None, "checks": 0, "consistency": None, "repeats": 0}


def annotator_quality(*, study: Study) -> list[dict[str, Any]]:
    """Per human annotator: quality-control pass rate, consistency, too-fast items, left-side preference.

    - pass rate and consistency: ``annotator_quality_control``;
    - too fast: completed items rated in fewer than ``study.too_fast_seconds`` seconds;
    - left preference: among their non-"Similar" answers (all items, gold and traps included),
      the share that chose the left side (A); 0.5 means no position bias.

    The agreement report adds leave-one-out agreement, confidence and speed figures
    (``reports.quality``).
    """
    sides = {
        row["rater"]: row
        for row in Rating.objects.filter(item__study=study, is_current=True, rater_kind=Rating.RaterKind.HUMAN)
        .order_by()
        .values("rater")
        .annotate(sided=Count("id", filter=Q(shown_choice__in=["A", "B"])), left=Count("id", filter=Q(shown_choice="A")))
    }
    control = annotator_quality_control(study=study)
    timing = (
        Assignment.objects.filter(item__study=study, status=Assignment.Status.COMPLETED)
        .values("annotator__username")
        .annotate(items=Count("id"), too_fast=Count("id", filter=Q(seconds__lt=study.too_fast_seconds)))
    )
    out = []
    names = {t["annotator__username"]: t for t in timing}
    for rater in sorted(set(sides) | set(names)):
        t = names.get(rater, {"items": 0, "too_fast": 0})
        sided = sides[rater]["sided"] if rater in sides else 0
        out.append(
            {
                "annotator": rater,
                "items": t["items"],
                "too_fast": t["too_fast"],
                **control.get(rater, QUALITY_CONTROL_NONE),
                "left_preference": sides[rater]["left"] / sided if sided else None,
                "sided_answers": sided,
            }
        )
    return out


def study_author_tells(*, study: Study) -> list[dict[str, str]]:
    """Responses whose text gives their author away (the rules of ``annotation.giveaways``).

    Returns one row per flagged response, its first finding: {"item" (key), "response"
    (baseline|challenger), "match"}. Staff fix or drop these items before the study opens.
    """
    found: dict[tuple[str, str], dict[str, str]] = {}
    for row in study_giveaways(study=study):
        if row["item"] is not None and row["side"] in ("baseline", "challenger"):
            found.setdefault((row["item"], row["side"]), {"item": row["item"], "response": row["side"], "match": row["match"]})
    return list(found.values())
