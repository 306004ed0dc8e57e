"""Study links and crowd settings (issue 21): what staff set up before anyone enrols.

A ``StudyLink`` is an unguessable token with an optional cap and expiry; ``CrowdSettings`` hold a
study's rules for participants (items per participant, time limit, Prolific codes, onboarding).
``link_refusal`` is the one rule of whether a link admits anyone now. Enrolment itself is in
``enrolment``; docs/crowd.md walks staff through it.
"""
from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from ..enrolment_models import CrowdSettings, StudyLink
from ..models import Item, Study
from .base import StudyFieldError

CROWD_EDITABLE = (
    "items_per_participant", "minutes_per_participant", "completion_code", "screenout_code", "left_work_counts",
    "close_when_complete", "onboarding", "onboarding_items", "onboarding_threshold",
)


# Prolific's placeholders (docs/crowd.md, "Prolific"): Prolific fills them in for each participant.
PROLIFIC_QUERY = "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"


def link_urls(*, absolute_path: str) -> dict[str, str]:
    """The two URLs staff hand out for a link whose join page is at ``absolute_path`` (an absolute URL,
    ``https://host/join/<token>/``): {"url": for volunteers, "prolific_url": the same with Prolific's placeholders}."""
    return {"url": absolute_path, "prolific_url": absolute_path + PROLIFIC_QUERY}


class EnrolmentRefused(ValueError):
    """An enrolment the link or the input does not allow; ``status`` is the HTTP answer (400, 403, 404, 409, 410)
    and ``field`` the input at fault, if any."""

    def __init__(self, message: str, *, status: int = 400, field: str = "link"):
        self.status = status
        self.field = field
        super().__init__(message)


# --------------------------------------------------------------------------- settings


def crowd_settings_of(*, study: Study) -> CrowdSettings:
    """The study's crowd settings; an unsaved row with the defaults when staff never set them."""
    try:
        return study.crowd
    except CrowdSettings.DoesNotExist:
        return CrowdSettings(study=study)


@transaction.atomic
def crowd_settings_update(*, study: Study, **fields: Any) -> CrowdSettings:
    """Change a study's crowd settings (names in ``CROWD_EDITABLE``); runs the model fields' validators.

    Raises StudyFieldError naming the field (unknown name, value out of bounds, or onboarding
    switched on with no item that has known answers).
    """
    unknown = set(fields) - set(CROWD_EDITABLE)
    if unknown:
        raise StudyFieldError(sorted(unknown)[0], f"cannot change {', '.join(sorted(unknown))} "
                                                   f"(editable: {', '.join(CROWD_EDITABLE)})")
    crowd = CrowdSettings.objects.select_for_update().filter(study=study).first() or CrowdSettings(study=study)
    for name, value in fields.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise StudyFieldError(name, f"{name}: enter a finite number")
        setattr(crowd, name, value)
    try:
        crowd.full_clean(exclude=["study"])
    except ValidationError as exc:
        name, messages = next(iter(exc.message_dict.items()))
        raise StudyFieldError(name, f"{name}: {' '.join(messages)}") from None
    if crowd.onboarding != CrowdSettings.Onboarding.NONE and not onboarding_pool(study=study, crowd=crowd).exists():
        kind = "gold" if crowd.onboarding == CrowdSettings.Onboarding.GOLD else "onboarding"
        raise StudyFieldError("onboarding", f"onboarding: the study has no {kind} item with known answers")
    crowd.save()
    study.crowd = crowd
    return crowd


def onboarding_pool(*, study: Study, crowd: CrowdSettings):
    """The items onboarding draws from, in a fixed order: gold items or the study's own onboarding items."""
    kind = Item.Kind.GOLD if crowd.onboarding == CrowdSettings.Onboarding.GOLD else Item.Kind.ONBOARDING
    return Item.objects.filter(study=study, kind=kind).exclude(gold_answers={}).order_by("public_id")


# --------------------------------------------------------------------------- links


@transaction.atomic
def link_create(*, study: Study, label: str = "", max_participants: int | None = None,
                expires_at: datetime | None = None, created_by=None) -> StudyLink:
    """A new enrolment link of ``study`` with an unguessable token (``secrets``, 192 bits).

    ``max_participants``: cap on enrolments through this link (None: no cap); ``expires_at``: an
    aware datetime after which the link refuses enrolments (None: never). Raises StudyFieldError
    for a cap out of 1..100000, an expiry in the past or a label over 100 characters.
    """
    if expires_at is not None and expires_at <= timezone.now():
        raise StudyFieldError("expires_at", "expires_at: the expiry must be in the future")
    link = StudyLink(study=study, label=(label or "").strip(), max_participants=max_participants,
                     expires_at=expires_at, created_by=created_by)
    try:
        link.full_clean(exclude=["study", "created_by"])
    except ValidationError as exc:
        name, messages = next(iter(exc.message_dict.items()))
        raise StudyFieldError(name, f"{name}: {' '.join(messages)}") from None
    link.save()
    return link


def link_set_active(*, link: StudyLink, is_active: bool) -> StudyLink:
    """Deactivate a link (no enrolment through it any more; its participants keep working) or reactivate it."""
    link.is_active = bool(is_active)
    link.save(update_fields=["is_active"])
    return link


def links_with_usage(*, study: Study) -> list[StudyLink]:
    """The study's links, newest first, each with ``participants_count`` (enrolments through it)."""
    return list(study.links.annotate(participants_count=Count("participants")).order_by("-created_at"))


def link_refusal(*, link: StudyLink | None, now: datetime | None = None) -> EnrolmentRefused | None:
    """Why ``link`` accepts no new participant now (without counting its cap), or None when it does."""
    now = now or timezone.now()
    if link is None:
        return EnrolmentRefused("This study link does not exist. Check that you copied the whole address.", status=404)
    if not link.is_active:
        return EnrolmentRefused("This study link has been closed by the study's staff.", status=410)
    if link.expires_at is not None and link.expires_at <= now:
        return EnrolmentRefused("This study link has expired.", status=410)
    if not link.study.is_open:
        return EnrolmentRefused("This study is not open for new participants at the moment.", status=403)
    return None
