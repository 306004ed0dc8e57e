"""Reads of the annotator's workflow (issue 21): their done items, the previous item, answers to pre-fill, flags.

Blinding (paper section 5.5): what annotators get from here names items only by their opaque
``public_id`` and describes them by the conversation, never by a system name, a side or a
database id. Staff reads (``study_flags``) carry item keys, as the staff pages always do.
"""
from __future__ import annotations

from typing import Any

from django.db.models import Q

from .models import Assignment, Flag, Rating, Study

SNIPPET_CHARS = 90


def _snippet(item) -> str:
    """The last user turn of the item's conversation (what an annotator recognises it by), shortened."""
    history = item.history if isinstance(item.history, list) else []
    turns = [t.get("text", "") for t in history if isinstance(t, dict) and t.get("role", "user") == "user"]
    text = " ".join((turns[-1] if turns else item.persona or "").split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"


def annotator_items(*, study: Study, annotator) -> list[dict[str, Any]]:
    """The annotator's rated and skipped items of ``study``, in the order they were given them.

    Each row: {"item" (public id), "number" (1-based), "status" ("completed" or "skipped"),
    "skip_reason", "skip_reason_label", "completed_at", "snippet"}. Expired and live reservations
    are left out (the live one is the current item).
    """
    rows = (
        Assignment.objects.filter(item__study=study, annotator=annotator,
                                  status__in=[Assignment.Status.COMPLETED, Assignment.Status.SKIPPED])
        .select_related("item").order_by("reserved_at", "pk")
    )
    labels = dict(Assignment.SkipReason.choices)
    return [
        {"item": a.item.public_id, "number": n, "status": a.status, "skip_reason": a.skip_reason,
         "skip_reason_label": labels.get(a.skip_reason, ""), "completed_at": a.completed_at, "snippet": _snippet(a.item)}
        for n, a in enumerate(rows, start=1)
    ]


def assignment_previous(*, study: Study, annotator, before: Assignment | None = None) -> Assignment | None:
    """The rated item the annotator was given just before ``before`` (or their last rated item); None if none."""
    qs = Assignment.objects.filter(item__study=study, annotator=annotator, status=Assignment.Status.COMPLETED)
    if before is not None:
        qs = qs.filter(Q(reserved_at__lt=before.reserved_at) | Q(reserved_at=before.reserved_at, pk__lt=before.pk))
    return qs.select_related("item").order_by("-reserved_at", "-pk").first()


def assignment_current_comment(*, assignment: Assignment) -> str:
    """The annotator's current comment on the item ("" when none)."""
    row = (
        Rating.objects.filter(item=assignment.item, annotator=assignment.annotator, rater_kind=Rating.RaterKind.HUMAN,
                              is_current=True).values_list("comment", flat=True).first()
    )
    return row or ""


# Open flags the manage page lists (the newest); the API lists every one.
MANAGE_FLAGS_SHOWN = 100


def study_flags_open_count(*, study: Study) -> int:
    """How many open flags ``study`` has (the manage page says how many it does not list)."""
    return Flag.objects.filter(item__study=study, resolved_at__isnull=True).count()


def study_flags(*, study: Study, include_resolved: bool = False, newest: int | None = None) -> list[dict[str, Any]]:
    """The study's flags for staff, oldest first: open ones only unless ``include_resolved``;
    with ``newest``, only the newest that many, newest first (the manage page).

    Each row: {"id", "item_key", "item", "annotator", "comment", "created_at", "resolved_at", "resolved_by"}.
    """
    qs = Flag.objects.filter(item__study=study).select_related("item", "annotator", "resolved_by")
    if not include_resolved:
        qs = qs.filter(resolved_at__isnull=True)
    if newest is not None:
        qs = qs.order_by("-created_at", "-pk")[:newest]
    return [
        {"id": f.pk, "item_key": f.item.key, "item": f.item.public_id, "annotator": f.annotator.get_username(),
         "comment": f.comment, "created_at": f.created_at, "resolved_at": f.resolved_at,
         "resolved_by": f.resolved_by.get_username() if f.resolved_by else None}
        for f in qs
    ]
