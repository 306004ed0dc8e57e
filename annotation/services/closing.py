"""A crowd study closes itself once every rated item has its overlap (issue 21, ``CrowdSettings.close_when_complete``).

Called by ``ratings._rating_store`` inside the transaction that completes an assignment.
"""
from __future__ import annotations

from django.db.models import Count, Q
from django.utils import timezone

from ..models import RATED_KINDS, Assignment, Item, Study
from .links import crowd_settings_of


def study_close_if_complete(*, study: Study, item: Item) -> bool:
    """Close the study once every rated item has ``overlap`` completed assignments; True when it closed.

    Only for studies with a link and ``close_when_complete`` (a crowd study). Called inside the
    transaction that completes an assignment of ``item``; must run in a transaction.

    Concurrent submits see each other's completions only once committed, so a check on this
    transaction's snapshot alone can miss the moment the study completes (two raters finishing
    the same item, or the last two items, would each see the other's still open). So: the item's
    row lock orders the raters of one item and its completions are counted after it; the study
    row's lock orders the last items of a study and the full check, a new statement, sees every
    earlier commit. The locks are taken only when the item may be full (its completed plus live
    reserved assignments reach the overlap).
    """
    if item.kind not in RATED_KINDS or not study.is_open:
        return False
    now = timezone.now()
    completed = Q(status=Assignment.Status.COMPLETED)
    held = completed | Q(status=Assignment.Status.RESERVED, expires_at__gt=now)
    # Only a study with a link closes itself: checked first, so a named-account study pays one
    # constant statement per submit (the annotate-load target, issue 17).
    if not study.links.exists():
        return False
    if Assignment.objects.filter(held, item=item).count() < study.overlap:
        return False
    if not crowd_settings_of(study=study).close_when_complete:
        return False
    Item.objects.select_for_update(no_key=True).filter(pk=item.pk).first()
    if Assignment.objects.filter(completed, item=item).count() < study.overlap:
        return False
    Study.objects.select_for_update(no_key=True).filter(pk=study.pk).first()
    short = (Item.objects.filter(study=study, kind__in=RATED_KINDS)
             .annotate(done=Count("assignments", filter=Q(assignments__status=Assignment.Status.COMPLETED)))
             .filter(done__lt=study.overlap))
    if short.exists():
        return False
    closed = Study.objects.filter(pk=study.pk, is_open=True).update(is_open=False) == 1
    study.is_open = False
    return closed
