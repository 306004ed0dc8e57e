"""Reads about crowd participants (issue 21): which ratings count, and the per-participant work export.

``ratings_counted`` is the one place that decides which ratings of a study count: the
aggregation (votes, agreement, reports) and the rating exports start from it, so they agree.
Left out: the ratings of participants screened out by the onboarding, and, when the study's
``CrowdSettings.left_work_counts`` is off, of participants who left or ran out of time.
Onboarding answers are never Rating rows (``services.onboarding``), so no aggregate sees them.
"""
from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.utils import timezone

from .enrolment_models import Participant
from .models import Assignment, Item, Rating, Study

PARTICIPANT_COLUMNS = (
    "participant", "display_name", "prolific_pid", "prolific_study_id", "prolific_session_id", "link", "status",
    "counted", "enrolled_at", "ended_at", "items_done", "skipped", "seconds_rating", "minutes_enrolled", "onboarding_correct",
    "onboarding_graded", "gold_pass_rate", "gold_checks", "trap_pass_rate", "trap_checks", "consistency", "repeats",
    "too_fast", "flags",
)
# A share of quality-control answers below this flags the participant for a closer look before approval.
PASS_RATE_FLAG = 0.5


def participants_excluded(*, study: Study, now=None) -> QuerySet[Participant]:
    """The participants of ``study`` whose ratings do not count (see the module docstring); lazy, no query
    of its own (the study's crowd setting is joined in), so callers can use it as a subquery."""
    now = now or timezone.now()
    ended = Q(status__in=[Participant.Status.LEFT, Participant.Status.TIMED_OUT]) | Q(
        # Out of time but not seen since: the same as timed out.
        status__in=[Participant.Status.ONBOARDING, Participant.Status.ACTIVE], deadline__lte=now)
    return Participant.objects.filter(study=study).filter(
        Q(status=Participant.Status.SCREENED_OUT) | (Q(study__crowd__left_work_counts=False) & ended))


def ratings_counted(*, study: Study) -> QuerySet[Rating]:
    """The current ratings of ``study`` that count: every rater's, less those of ``participants_excluded``.

    LLM ratings (no annotator) and named accounts' ratings always count. One query with the
    exclusion as a subquery.
    """
    return Rating.objects.filter(item__study=study, is_current=True).exclude(
        annotator_id__in=participants_excluded(study=study).values("user_id"))


def participants_onboarding(*, study: Study) -> list[dict[str, Any]]:
    """Each participant who finished an onboarding: their user name, status, known answers right and
    asked, and whether their ratings count. For the quality report: these answers are in no figure."""
    excluded = set(participants_excluded(study=study).values_list("pk", flat=True))
    return [
        {"participant": p.user.username, "status": p.status, "correct": p.onboarding["correct"],
         "graded": p.onboarding["graded"], "counted": p.pk not in excluded}
        for p in Participant.objects.filter(study=study, onboarding__has_key="graded").select_related("user")
        .order_by("enrolled_at", "pk")
    ]


def _quality_by_user(*, study: Study, users: list[int]) -> dict[int, dict[str, list[int]]]:
    """Per user: [checks, passed] on gold items and on identical pairs, [repeats, consistent] on repeated pairs."""
    rows = list(
        Rating.objects.filter(item__study=study, is_current=True, annotator_id__in=users)
        .exclude(item__kind=Item.Kind.NORMAL).order_by()
        .values_list("annotator_id", "item__kind", "item__gold_answers", "item__repeat_of_id", "question", "choice")
    )
    repeated = {row[3] for row in rows if row[1] == Item.Kind.TRAP_REPEAT}
    original = {
        (user, item_id, q): choice for user, item_id, q, choice in Rating.objects.filter(
            item_id__in=repeated, is_current=True, annotator_id__in=users,
        ).values_list("annotator_id", "item_id", "question", "choice")
    } if repeated else {}
    out: dict[int, dict[str, list[int]]] = {}
    for user, kind, gold, repeat_of, question, choice in rows:
        tally = out.setdefault(user, {"gold": [0, 0], "trap": [0, 0], "repeat": [0, 0]})
        if kind in (Item.Kind.GOLD, Item.Kind.TRAP_IDENTICAL) and question in (gold or {}):
            pair = tally["gold" if kind == Item.Kind.GOLD else "trap"]
            pair[0] += 1
            pair[1] += gold[question] == choice
        elif kind == Item.Kind.TRAP_REPEAT and (user, repeat_of, question) in original:
            tally["repeat"][0] += 1
            tally["repeat"][1] += original[(user, repeat_of, question)] == choice
    return out


def _rate(pair: list[int]) -> float | None:
    return pair[1] / pair[0] if pair[0] else None


def participant_rows(*, study: Study) -> list[dict[str, Any]]:
    """One row per participant for approval and bonuses (``PARTICIPANT_COLUMNS``), in enrolment order.

    - items_done: completed assignments (quality-control items included); skipped: items they
      skipped (a participant who skips nearly everything is one to reject); seconds_rating: the
      sum of their reservation-to-submit times (s); minutes_enrolled: enrolment to end (or now);
    - onboarding_correct / onboarding_graded: known answers right / asked;
    - gold_pass_rate (gold items), trap_pass_rate (identical pairs: "similar" is right),
      consistency (repeated pairs with sides swapped), each with its number of answers;
    - too_fast: items rated faster than ``study.too_fast_seconds``;
    - counted: whether their ratings count (``ratings_counted``); flags: reasons to look before approving.
    """
    now = timezone.now()
    participants = list(Participant.objects.filter(study=study).select_related("user", "link").order_by("enrolled_at", "pk"))
    users = [p.user_id for p in participants]
    work = {
        row["annotator_id"]: row for row in Assignment.objects.filter(
            item__study=study, annotator_id__in=users, status=Assignment.Status.COMPLETED,
        ).order_by().values("annotator_id").annotate(
            items=Count("id"), seconds_sum=Sum("seconds"), too_fast=Count("id", filter=Q(seconds__lt=study.too_fast_seconds)),
        )
    }
    skipped = dict(Assignment.objects.filter(item__study=study, annotator_id__in=users, status=Assignment.Status.SKIPPED)
                   .order_by().values("annotator_id").annotate(n=Count("id")).values_list("annotator_id", "n"))
    quality = _quality_by_user(study=study, users=users)
    excluded = set(participants_excluded(study=study, now=now).values_list("pk", flat=True))
    rows = []
    for p in participants:
        w = work.get(p.user_id, {"items": 0, "seconds_sum": 0.0, "too_fast": 0})
        q = quality.get(p.user_id, {"gold": [0, 0], "trap": [0, 0], "repeat": [0, 0]})
        gold, trap, consistency = _rate(q["gold"]), _rate(q["trap"]), _rate(q["repeat"])
        flags = [p.status] if p.status in (Participant.Status.SCREENED_OUT, Participant.Status.LEFT,
                                           Participant.Status.TIMED_OUT, Participant.Status.NO_WORK) else []
        flags += [name for name, rate in (("gold_failed", gold), ("trap_failed", trap), ("inconsistent", consistency))
                  if rate is not None and rate < PASS_RATE_FLAG]
        if w["items"] and w["too_fast"] * 2 >= w["items"]:
            flags.append("too_fast")
        rows.append({
            "participant": p.user.username, "display_name": p.display_name, "prolific_pid": p.prolific_pid,
            "prolific_study_id": p.prolific_study_id, "prolific_session_id": p.prolific_session_id,
            "link": p.link.label or str(p.link_id), "status": p.status, "counted": p.pk not in excluded,
            "enrolled_at": p.enrolled_at.isoformat(), "ended_at": p.ended_at.isoformat() if p.ended_at else "",
            "items_done": w["items"], "skipped": skipped.get(p.user_id, 0), "seconds_rating": round(float(w["seconds_sum"] or 0.0), 1),
            "minutes_enrolled": round(((p.ended_at or now) - p.enrolled_at).total_seconds() / 60, 1),
            "onboarding_correct": p.onboarding.get("correct"), "onboarding_graded": p.onboarding.get("graded"),
            "gold_pass_rate": gold, "gold_checks": q["gold"][0], "trap_pass_rate": trap, "trap_checks": q["trap"][0],
            "consistency": consistency, "repeats": q["repeat"][0], "too_fast": w["too_fast"], "flags": flags,
        })
    return rows


def staff_names(*, study: Study) -> dict[str, str]:
    """How staff see the crowd participants of ``study``: {username: "display name (Prolific id)"}.

    Participants have a generated username (``participant-<hex>``) nobody knows them by; staff
    pages name them by display name, with the Prolific id when they came through Prolific (a Prolific
    participant's display name, "Prolific <id>", already carries it). Named
    accounts are absent: their username is their name (``annotation_tags.staff_name``)."""
    return {username: f"{name} ({pid})" if pid and pid not in name else name
            for username, name, pid in Participant.objects.filter(study=study)
            .values_list("user__username", "display_name", "prolific_pid")}
