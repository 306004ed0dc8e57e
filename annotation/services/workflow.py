"""The annotator's workflow beyond rating (issue 21): skip an item, flag it for staff, confirm the instructions.

Changing an earlier item's answers needs no service of its own: ``rating_submit`` accepts any
item the annotator rated while the study is open, and appends (docs/annotation.md, "The
annotator's workflow").
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import Assignment, Flag, InstructionsConfirmation, Study
from .base import ItemConflict, RatingInvalid, StudyClosed
from .enrolment import participant_may_act
from .ratings import comment_clean

OPEN_FLAG = {"comment": "you already reported this item; the study's staff have not looked at it yet"}


def _own_assignment_locked(*, study: Study, annotator, public_id: str) -> Assignment | None:
    return (
        Assignment.objects.select_for_update(of=("self",), no_key=True).select_related("item__study")
        .filter(item__study=study, item__public_id=public_id, annotator=annotator).first()
    )


@transaction.atomic
def assignment_skip(*, study: Study, annotator, public_id: str, reason: str) -> Assignment | None:
    """Skip the annotator's item ``public_id`` with ``reason`` (an ``Assignment.SkipReason`` value).

    The assignment becomes ``skipped``: it no longer holds a slot (the overlap counts only live
    assignments), so the item goes to someone else, and ``assignment_next`` never offers the item
    to this annotator again. Their side balance is untouched (it counts completed items only).
    Skipping again with the same or another reason changes nothing but the reason.

    Returns the assignment, or None when the annotator has no assignment of that item (404).
    Raises RatingInvalid({"reason"}) for an unknown reason, StudyClosed when the study is closed,
    ParticipantInactive when a crowd participant is no longer active (``participant_may_act``),
    ItemConflict when the item was already rated (change the answers instead).
    """
    if reason not in Assignment.SkipReason.values:
        raise RatingInvalid({"reason": f"give one of: {', '.join(Assignment.SkipReason.values)}"})
    assignment = _own_assignment_locked(study=study, annotator=annotator, public_id=public_id)
    if assignment is None:
        return None
    if not study.is_open:
        raise StudyClosed()
    participant_may_act(study=study, annotator=annotator)
    if assignment.status == Assignment.Status.COMPLETED:
        raise ItemConflict({"item": "you already answered this item: change your answers instead of skipping it"})
    assignment.status = Assignment.Status.SKIPPED
    assignment.skip_reason = reason
    assignment.save(update_fields=["status", "skip_reason"])
    return assignment


@transaction.atomic
def flag_create(*, study: Study, annotator, public_id: str, comment: str) -> Flag | None:
    """Report item ``public_id`` to the study's staff with ``comment`` (1 to ``COMMENT_MAX_CHARS`` characters).

    Any item the annotator was given can be flagged (reserved, rated or skipped); the flag does
    not change their assignment. At most one open flag per (annotator, item) (the constraint
    ``flag_one_open_per_annotator_item``): a second one before staff resolve the first raises
    ItemConflict (409). Returns the new flag, or None when the annotator has no assignment of
    that item (404). Raises RatingInvalid({"comment"}) for an empty (invisible characters only
    count as empty) or too long comment, StudyClosed when the study is closed,
    ParticipantInactive when a crowd participant is no longer active.
    """
    comment = comment_clean(comment, required=True)
    assignment = Assignment.objects.filter(item__study=study, item__public_id=public_id, annotator=annotator).first()
    if assignment is None:
        return None
    if not study.is_open:
        raise StudyClosed()
    participant_may_act(study=study, annotator=annotator)
    if Flag.objects.filter(item_id=assignment.item_id, annotator=annotator, resolved_at__isnull=True).exists():
        raise ItemConflict(OPEN_FLAG)
    try:
        with transaction.atomic():  # a savepoint: the constraint decides between two requests that race
            return Flag.objects.create(item_id=assignment.item_id, annotator=annotator, comment=comment)
    except IntegrityError:
        raise ItemConflict(OPEN_FLAG) from None


def flag_resolve(*, flag: Flag, by) -> Flag:
    """Mark ``flag`` resolved by staff user ``by`` (now); resolving a resolved flag changes nothing."""
    if flag.resolved_at is None:
        Flag.objects.filter(pk=flag.pk, resolved_at__isnull=True).update(resolved_at=timezone.now(), resolved_by=by)
        flag.refresh_from_db()
    return flag


def instructions_confirm(*, study: Study, annotator) -> InstructionsConfirmation:
    """Record that ``annotator`` read ``study``'s current instructions version (kept in the database, not the session)."""
    confirmation, _ = InstructionsConfirmation.objects.update_or_create(
        study=study, annotator=annotator, defaults={"version": study.instructions_version},
    )
    return confirmation


def instructions_confirmed(*, study: Study, annotator) -> bool:
    """Whether ``annotator`` confirmed ``study``'s current instructions version (once per version, not per login)."""
    return InstructionsConfirmation.objects.filter(
        study=study, annotator=annotator, version=study.instructions_version
    ).exists()
