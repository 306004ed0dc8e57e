"""Crowd studies (issue 21): study links, enrolment without a password, the participant's life cycle.

A participant enrols through a ``StudyLink`` (a volunteer with a display name, or a Prolific
participant with ``PROLIFIC_PID``/``STUDY_ID``/``SESSION_ID``) and gets their own Django user
with an unusable password; the session carries them. The rules of ``CrowdSettings`` apply to
participants only: named accounts annotate as before. docs/crowd.md walks staff through it.
"""
from __future__ import annotations

import secrets
import unicodedata
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from common.text import text_visible

from ..enrolment_models import DISPLAY_NAME_MAX, PROLIFIC_TOKEN, CrowdSettings, Participant, StudyLink
from ..models import RATED_KINDS, Assignment, Item, Study
from .base import ParticipantInactive, User
from .links import EnrolmentRefused, crowd_settings_of, link_refusal

PROLIFIC_COMPLETE_URL = "https://app.prolific.com/submissions/complete?cc={code}"
PROLIFIC_PARAMS = {"PROLIFIC_PID": "prolific_pid", "STUDY_ID": "prolific_study_id", "SESSION_ID": "prolific_session_id"}
# Participants whose work is still going on (neither finished nor ended some other way).
IN_PROGRESS = (Participant.Status.ONBOARDING, Participant.Status.ACTIVE)
ENDED_EARLY = (Participant.Status.LEFT, Participant.Status.TIMED_OUT)


# --------------------------------------------------------------------------- enrolment


def display_name_clean(name: Any) -> str:
    """The display name as stored: NFKC, then ``common.text.text_visible`` (one line), 1 to 60 characters.

    Letters of every script are kept (an Arabic or Hebrew name is a name); what is dropped are
    invisible characters (controls, U+202E RIGHT-TO-LEFT OVERRIDE and other format characters
    that would reorder the text around the name on staff pages): the rule flags and comments
    follow too. Raises EnrolmentRefused (400, field ``display_name``).
    """
    if not isinstance(name, str):
        raise EnrolmentRefused("Choose a display name.", field="display_name")
    name = text_visible(unicodedata.normalize("NFKC", name))
    if not name:
        raise EnrolmentRefused("Choose a display name (letters or digits; it is what the study's staff see).",
                               field="display_name")
    if len(name) > DISPLAY_NAME_MAX:
        raise EnrolmentRefused(f"Your display name is {len(name)} characters long; use at most {DISPLAY_NAME_MAX}.",
                               field="display_name")
    return name


def prolific_params(query) -> dict[str, str]:
    """The Prolific ids in a request's query or form data (``PROLIFIC_PID`` etc.), checked; {} when there is no PID.

    Raises EnrolmentRefused (400) for a parameter given twice (which one would count is
    ambiguous), an id with characters Prolific never uses, or ``STUDY_ID`` or ``SESSION_ID``
    without ``PROLIFIC_PID``.
    """
    if hasattr(query, "getlist"):
        for param in PROLIFIC_PARAMS:
            if len(query.getlist(param)) > 1:
                raise EnrolmentRefused(f"{param} is given more than once; open the study from Prolific again.",
                                       field=param)
    found = {field: str(query.get(param, "")).strip() for param, field in PROLIFIC_PARAMS.items()}
    if not found["prolific_pid"]:
        if any(found.values()):
            raise EnrolmentRefused("STUDY_ID and SESSION_ID come with a PROLIFIC_PID; open the study from Prolific.",
                                   field="PROLIFIC_PID")
        return {}
    for param, field in PROLIFIC_PARAMS.items():
        if found[field]:
            try:
                PROLIFIC_TOKEN(found[field])
            except ValidationError:
                raise EnrolmentRefused(f"{param} is not a Prolific id (letters, digits, '_' or '-', at most 64).",
                                       field=param) from None
    return found


def prolific_resume(*, link: StudyLink, prolific: dict[str, str]) -> Participant | None:
    """The participant a Prolific id resumes through ``link`` (a new browser), or None when the id is new here.

    Only for a usable link (the caller checks ``link_refusal`` first: a deactivated or expired
    link resumes nobody) and only with the ``SESSION_ID`` stored at enrolment, when one was:
    Prolific gives each submission its own, so somebody who only knows the PID cannot take the
    participant's session over. Raises EnrolmentRefused (403) for another SESSION_ID; nothing changes.
    """
    existing = Participant.objects.filter(study=link.study, prolific_pid=prolific["prolific_pid"]) \
        .select_related("user", "study").first()
    if existing is None:
        return None
    if existing.prolific_session_id and prolific.get("prolific_session_id", "") != existing.prolific_session_id:
        raise EnrolmentRefused("This Prolific id is already taking part from another Prolific session (SESSION_ID). "
                               "Continue in the browser you started in, or contact the study's staff.", status=403)
    return existing


def _new_username() -> str:
    return f"participant-{secrets.token_hex(6)}"


def participant_enrol(*, token: str, display_name: str = "", prolific: dict[str, str] | None = None
                      ) -> tuple[Participant, bool]:
    """Enrol someone through the link with ``token``; returns (participant, created).

    With ``prolific`` (``prolific_params``) the participant is that Prolific id: the same id
    (and SESSION_ID) gets its own participant back (``created`` False) and is never enrolled twice, even by
    requests that race (the unique constraint decides; the loser reads the winner's row).
    Otherwise ``display_name`` is checked (``display_name_clean``) and a new participant made.
    A new participant gets a user with a generated username and an unusable password, is added
    to the study's annotators and starts in onboarding when the study has one.

    Raises EnrolmentRefused: 404 unknown link; 410 deactivated or expired; 403 study closed, or
    a known Prolific id with another SESSION_ID (``prolific_resume``); 409 the link's cap is
    reached; 400 a bad display name. Nothing is created then. A known Prolific id resumes only
    through a usable link.
    """
    prolific = prolific or {}
    pid = prolific.get("prolific_pid", "")
    for _attempt in range(3):
        try:
            with transaction.atomic():
                return _enrol_once(token=token, display_name=display_name, prolific=prolific)
        except IntegrityError:
            if not pid:
                raise
            # Another request enrolled this Prolific id first: resume theirs (read after the rollback).
    # The same rules as a resume: a usable link and the same SESSION_ID.
    link = StudyLink.objects.select_related("study").filter(token=token).first()
    if (refusal := link_refusal(link=link)) is not None:
        raise refusal
    existing = prolific_resume(link=link, prolific=prolific)
    if existing is None:
        raise EnrolmentRefused("Enrolling failed; open the link again.", status=409)
    return existing, False


def _enrol_once(*, token: str, display_name: str, prolific: dict[str, str]) -> tuple[Participant, bool]:
    now = timezone.now()
    # The link's row lock serialises its enrolments: the cap is counted and the participant
    # inserted by one request at a time.
    link = StudyLink.objects.select_for_update().select_related("study").filter(token=token).first()
    pid = prolific.get("prolific_pid", "")
    if (refusal := link_refusal(link=link, now=now)) is not None:
        raise refusal
    if pid and (existing := prolific_resume(link=link, prolific=prolific)) is not None:
        return existing, False
    name = f"Prolific {pid}" if pid else display_name_clean(display_name)
    if link.max_participants is not None and link.participants.count() >= link.max_participants:
        raise EnrolmentRefused("This study link is full: every place has been taken.", status=409)
    crowd = crowd_settings_of(study=link.study)
    user = User(username=_new_username())
    user.set_unusable_password()
    user.save()
    minutes = crowd.minutes_per_participant
    participant = Participant.objects.create(
        study=link.study, link=link, user=user, display_name=name, enrolled_at=now,
        deadline=now + timedelta(minutes=minutes) if minutes else None,
        status=(Participant.Status.ACTIVE if crowd.onboarding == CrowdSettings.Onboarding.NONE
                else Participant.Status.ONBOARDING),
        **{field: prolific.get(field, "") for field in PROLIFIC_PARAMS.values()},
    )
    link.study.annotators.add(user)
    return participant, True


# --------------------------------------------------------------------------- life cycle


def participant_of(*, user, study: Study) -> Participant | None:
    """The user's participant of ``study`` (None for a named account or another study's participant)."""
    if not getattr(user, "is_authenticated", False):
        return None
    return Participant.objects.filter(user=user, study=study).select_related("study", "link").first()


def _reservations_free(*, participant: Participant) -> int:
    """Give the participant's live reservations back to the pool now (what their expiry does later)."""
    return Assignment.objects.filter(
        annotator=participant.user, item__study=participant.study, status=Assignment.Status.RESERVED,
    ).update(status=Assignment.Status.EXPIRED)


def _participant_end(*, participant: Participant, status: str) -> Participant:
    with transaction.atomic():
        updated = Participant.objects.filter(pk=participant.pk, status__in=IN_PROGRESS).update(
            status=status, ended_at=timezone.now())
        if updated:
            _reservations_free(participant=participant)
    participant.refresh_from_db()
    return participant


def participant_leave(*, participant: Participant) -> Participant:
    """The participant leaves: their reservations go back to the pool at once; their finished items
    count or not per ``CrowdSettings.left_work_counts``. Leaving twice changes nothing."""
    return _participant_end(participant=participant, status=Participant.Status.LEFT)


def participant_refresh(*, participant: Participant, now: datetime | None = None) -> Participant:
    """Apply the time limit: past the deadline an unfinished participant is out of time (reservations freed)."""
    now = now or timezone.now()
    if participant.status in IN_PROGRESS and participant.deadline is not None and participant.deadline <= now:
        return _participant_end(participant=participant, status=Participant.Status.TIMED_OUT)
    return participant


def participant_items_done(*, participant: Participant) -> int:
    """Items the participant finished in their study (quality-control items included)."""
    return Assignment.objects.filter(annotator=participant.user, item__study=participant.study,
                                     status=Assignment.Status.COMPLETED).count()


def participant_may_take_items(*, study: Study, annotator) -> bool:
    """Whether ``assignment_next`` may reserve an item for ``annotator``: always for a named account;
    for a participant only while admitted (onboarding passed), in time, and under the study's
    items per participant (reaching it finishes them)."""
    participant = participant_of(user=annotator, study=study)
    if participant is None:
        return True
    participant = participant_refresh(participant=participant)
    if participant.status != Participant.Status.ACTIVE:
        return False
    quota = crowd_settings_of(study=study).items_per_participant
    if quota is not None and participant_items_done(participant=participant) >= quota:
        participant_finish(participant=participant)
        return False
    return True


ENDED_MESSAGES = {
    Participant.Status.ONBOARDING: "finish the qualification items first",
    Participant.Status.FINISHED: "you have finished this study",
    Participant.Status.NO_WORK: "there is no item left for you in this study",
    Participant.Status.SCREENED_OUT: "the qualification items ended this study for you",
    Participant.Status.LEFT: "you left this study",
    Participant.Status.TIMED_OUT: "your time for this study is up",
}


def participant_may_act(*, study: Study, annotator) -> None:
    """Check that ``annotator`` may write in ``study`` now: rate, change answers or the comment, skip, flag.

    The one check of every annotator write (``ratings._rating_store``, ``workflow.assignment_skip``,
    ``workflow.flag_create``). A named account always may; a participant only while active (not
    onboarding, finished, screened out, gone or past their time limit: applied here). Raises
    ParticipantInactive (409) with the reason; nothing is written then.
    """
    participant = participant_of(user=annotator, study=study)
    if participant is None:
        return
    status = participant_refresh(participant=participant).status
    if status != Participant.Status.ACTIVE:
        raise ParticipantInactive(f"{ENDED_MESSAGES.get(status, 'you are not taking part any more')}: "
                                  "nothing was stored")


def participant_finish(*, participant: Participant) -> Participant:
    """The participant is done (their items per participant reached, or nothing left for them)."""
    return _participant_end(participant=participant, status=Participant.Status.FINISHED)


def participant_when_none_left(*, participant: Participant, now: datetime | None = None) -> str:
    """What happens to an active participant ``assignment_next`` has nothing for: "wait", "finished" or "no_work".

    The one rule (docs/crowd.md, "When no item is left"): (a) "wait" while an item they could
    still take (rated kind, not theirs, never skipped by them, fewer completions than the
    overlap) is only held by other people's live reservations: status stays active, no code;
    (b) otherwise "finished" (status FINISHED, the completion code) when they completed at least
    one item; (c) otherwise "no_work" (status NO_WORK, no code: skipping every item earns
    nothing). A participant not active is left as is (returns their status); so is one whose
    study staff closed before they completed anything (returns "active": "being prepared", no
    code); a study that closed itself complete is (b) or (c).
    """
    participant = participant_refresh(participant=participant, now=now)
    if participant.status != Participant.Status.ACTIVE:
        return participant.status
    now = now or timezone.now()
    short = Item.objects.filter(study=participant.study, kind__in=RATED_KINDS).annotate(
        done=Count("assignments", filter=Q(assignments__status=Assignment.Status.COMPLETED)),
        held=Count("assignments", filter=Q(assignments__status=Assignment.Status.RESERVED,
                                           assignments__expires_at__gt=now)),
    ).filter(done__lt=participant.study.overlap)
    theirs = Assignment.objects.filter(item=OuterRef("pk"), annotator=participant.user,
                                       status__in=[Assignment.Status.COMPLETED, Assignment.Status.SKIPPED])
    if participant.study.is_open and short.exclude(Exists(theirs)).filter(held__gt=0).exists():
        return "wait"
    done = participant_items_done(participant=participant)
    if not done and not participant.study.is_open and short.exists():
        return participant.status  # closed by staff before they completed anything
    ended = Participant.Status.FINISHED if done else Participant.Status.NO_WORK
    return _participant_end(participant=participant, status=ended).status


def completion_url(*, participant: Participant) -> str | None:
    """Where a participant goes at the end: Prolific's completion URL with the completion code when
    they finished (the screen-out code when screened out), None for a volunteer or a missing code."""
    if not participant.prolific_pid:
        return None
    crowd = crowd_settings_of(study=participant.study)
    code = {Participant.Status.FINISHED: crowd.completion_code,
            Participant.Status.SCREENED_OUT: crowd.screenout_code}.get(participant.status)
    return PROLIFIC_COMPLETE_URL.format(code=code) if code else None
