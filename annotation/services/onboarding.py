"""Onboarding (issue 21): qualification items with known answers, shown before a participant's first item.

The items are the study's gold items or its own onboarding items (``CrowdSettings.onboarding``),
the first ``onboarding_items`` of them in the study's fixed (public id) order. The answers are
kept on the participant (``Participant.onboarding``), never as Rating rows, so they are in no
vote, agreement figure, report or export of ratings; the quality report and the participant
export show the score. A participant is admitted when the share of known answers they got
right reaches ``onboarding_threshold``; otherwise they are screened out.
"""
from __future__ import annotations

import hashlib
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..enrolment_models import Participant
from ..models import Assignment, Item
from .base import Answer, ParticipantInactive, RatingInvalid
from .enrolment import ENDED_MESSAGES, participant_refresh
from .links import crowd_settings_of, onboarding_pool
from .ratings import answers_validate


def _side(participant: Participant, item: Item) -> str:
    """The side the baseline is shown on in onboarding: a coin seeded by the study, participant and item."""
    digest = hashlib.sha256(f"{participant.study.seed}:onboarding:{participant.user_id}:{item.pk}".encode()).digest()
    return "A" if digest[0] % 2 == 0 else "B"


def _item_ids(participant: Participant) -> list[int]:
    """The participant's onboarding items, fixed at their first look (staff may add items later)."""
    ids = participant.onboarding.get("items")
    if ids is None:
        crowd = crowd_settings_of(study=participant.study)
        ids = list(onboarding_pool(study=participant.study, crowd=crowd).values_list("pk", flat=True)
                   [:crowd.onboarding_items])
        participant.onboarding = {**participant.onboarding, "items": ids, "answers": {}}
        Participant.objects.filter(pk=participant.pk).update(onboarding=participant.onboarding)
    return ids


def onboarding_next(*, participant: Participant) -> dict[str, Any] | None:
    """The participant's next unanswered onboarding item, or None when there is none (or they are not onboarding).

    Returns {"item": Item, "assignment": an unsaved Assignment carrying the side (for
    ``selectors.item_payload``), "index": answered so far, "total": items in their onboarding}.
    """
    if participant.status != Participant.Status.ONBOARDING:
        return None
    ids = _item_ids(participant)
    answered = participant.onboarding.get("answers", {})
    for index, pk in enumerate(ids):
        if str(pk) not in answered:
            item = Item.objects.select_related("study").get(pk=pk)
            assignment = Assignment(item=item, annotator=participant.user, baseline_side=_side(participant, item))
            return {"item": item, "assignment": assignment, "index": index, "total": len(ids)}
    return None


def _canonical(shown: str, baseline_side: str) -> str:
    if shown == "S":
        return "similar"
    return "baseline" if shown == baseline_side else "challenger"


def onboarding_answer(*, participant: Participant, public_id: str, answers: list[Answer]) -> Participant:
    """Store the participant's answers to their current onboarding item; after the last one, admit or screen out.

    The time limit holds in onboarding too: past their deadline the participant becomes timed
    out (reservations freed, committed) and ParticipantInactive (409) is raised; nothing is stored.

    Grading counts each question with a known answer (``Item.gold_answers``) of each onboarding
    item: admitted (status ACTIVE) when correct / graded >= ``onboarding_threshold``, otherwise
    SCREENED_OUT. Raises RatingInvalid for answers ``answers_validate`` refuses, an item that is
    not the participant's current onboarding item, or a participant not in onboarding.
    """
    participant = participant_refresh(participant=Participant.objects.select_related("study", "user").get(pk=participant.pk))
    if participant.status == Participant.Status.TIMED_OUT:
        raise ParticipantInactive(f"{ENDED_MESSAGES[participant.status]}: this answer was not stored")
    return _onboarding_answer(participant=participant, public_id=public_id, answers=answers)


@transaction.atomic
def _onboarding_answer(*, participant: Participant, public_id: str, answers: list[Answer]) -> Participant:
    participant = Participant.objects.select_for_update().select_related("study", "user").get(pk=participant.pk)
    current = onboarding_next(participant=participant)
    if current is None:
        raise RatingInvalid({"item": "your onboarding is over; go on to the study"})
    item = current["item"]
    if item.public_id != public_id:
        raise RatingInvalid({"item": "this is not your current onboarding item; answer the one shown"})
    answers = answers_validate(study=participant.study, answers=answers)
    side = current["assignment"].baseline_side
    record = dict(participant.onboarding)
    record["answers"] = {**record.get("answers", {}),
                         str(item.pk): {a.question: _canonical(a.choice, side) for a in answers}}
    participant.onboarding = record
    if onboarding_next(participant=participant) is None:
        _grade(participant)
    participant.save(update_fields=["onboarding", "status", "ended_at"])
    return participant


def _grade(participant: Participant) -> None:
    record = participant.onboarding
    gold = dict(Item.objects.filter(pk__in=record["items"]).values_list("pk", "gold_answers"))
    graded = correct = 0
    for pk in record["items"]:
        given = record["answers"].get(str(pk), {})
        for question, known in (gold.get(pk) or {}).items():
            graded += 1
            correct += given.get(question) == known
    threshold = crowd_settings_of(study=participant.study).onboarding_threshold
    record.update(correct=correct, graded=graded, threshold=threshold)
    admitted = graded == 0 or correct / graded >= threshold
    participant.status = Participant.Status.ACTIVE if admitted else Participant.Status.SCREENED_OUT
    if not admitted:
        participant.ended_at = timezone.now()
