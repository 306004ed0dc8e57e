"""Crowd studies (issue 21): study links, the participants who enrol through them, and a study's crowd settings.

Imported by ``annotation.models`` (Django finds models there). Participants are plain Django
users with an unusable password and a generated username; what staff see is their display
name or their Prolific id. Prolific's URL parameters and completion flow:
https://researcher-help.prolific.com/en/article/866615 (``PROLIFIC_PID``, ``STUDY_ID``,
``SESSION_ID``; ``https://app.prolific.com/submissions/complete?cc=CODE``).
"""
import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from .models import STUDY_RESERVATION_MINUTES_MAX, Study

# A Prolific id, study id, session id or completion code: letters, digits, "_" and "-" only
# (Prolific's are 24 hex digits and 8-character codes); anything else is refused with a 400.
PROLIFIC_TOKEN = RegexValidator(r"^[A-Za-z0-9_-]{1,64}$", "use 1 to 64 letters, digits, '_' or '-'")
PARTICIPANT_ITEMS_MAX = 10_000
LINK_CAP_MAX = 100_000
DISPLAY_NAME_MAX = 60


def new_link_token() -> str:
    """An unguessable link token: 32 url-safe characters from ``secrets`` (192 bits)."""
    return secrets.token_urlsafe(24)


class CrowdSettings(models.Model):
    """How a study runs for participants who enrol through a link; a study without a row uses the defaults."""

    class Onboarding(models.TextChoices):
        NONE = "none", "No onboarding"
        GOLD = "gold", "The study's gold items"
        OWN = "own", "Onboarding items of their own"

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="crowd")
    items_per_participant = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(PARTICIPANT_ITEMS_MAX)],
        help_text="Items each participant rates before they are sent back; empty: as many as are open.",
    )
    minutes_per_participant = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(STUDY_RESERVATION_MINUTES_MAX)],
        help_text="Time limit from enrolment; after it a participant gets no new item. Empty: none.",
    )
    completion_code = models.CharField(max_length=64, blank=True, validators=[PROLIFIC_TOKEN],
                                       help_text="Prolific completion code of participants who finish.")
    screenout_code = models.CharField(max_length=64, blank=True, validators=[PROLIFIC_TOKEN],
                                      help_text="Prolific code of participants who fail the onboarding.")
    left_work_counts = models.BooleanField(
        default=True, help_text="Whether the items finished by a participant who left (or ran out of time) count.")
    close_when_complete = models.BooleanField(default=True, help_text="Close the study once every item has its overlap.")
    onboarding = models.CharField(max_length=8, choices=Onboarding.choices, default=Onboarding.NONE)
    onboarding_items = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(50)], help_text="Qualification items shown first.")
    onboarding_threshold = models.FloatField(
        default=0.75, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of known answers a participant must get right to be admitted.",
    )

    def __str__(self) -> str:
        return f"crowd settings of {self.study}"


class StudyLink(models.Model):
    """A link participants enrol through: unguessable token, optional cap and expiry, can be deactivated."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="links")
    token = models.CharField(max_length=64, unique=True, default=new_link_token, editable=False)
    label = models.CharField(max_length=100, blank=True)
    max_participants = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(LINK_CAP_MAX)])
    expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.study} link {self.label or self.pk}"


class Participant(models.Model):
    """Somebody who enrolled through a link: their own user (no password), display name or Prolific ids."""

    class Status(models.TextChoices):
        ONBOARDING = "onboarding", "Onboarding"
        ACTIVE = "active", "Active"
        FINISHED = "finished", "Finished"
        NO_WORK = "no_work", "No item left (none completed)"
        SCREENED_OUT = "screened_out", "Screened out"
        LEFT = "left", "Left"
        TIMED_OUT = "timed_out", "Out of time"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="participants")
    link = models.ForeignKey(StudyLink, on_delete=models.PROTECT, related_name="participants")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="participant")
    display_name = models.CharField(max_length=DISPLAY_NAME_MAX)
    prolific_pid = models.CharField(max_length=64, blank=True, validators=[PROLIFIC_TOKEN])
    prolific_study_id = models.CharField(max_length=64, blank=True, validators=[PROLIFIC_TOKEN])
    prolific_session_id = models.CharField(max_length=64, blank=True, validators=[PROLIFIC_TOKEN])
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.ACTIVE)
    enrolled_at = models.DateTimeField()
    deadline = models.DateTimeField(null=True, blank=True, help_text="End of the participant's time limit.")
    ended_at = models.DateTimeField(null=True, blank=True)
    onboarding = models.JSONField(default=dict, blank=True,
                                  help_text='{"items": [ids], "answers": {id: {q: choice}}, "correct", "graded"}')

    class Meta:
        ordering = ["enrolled_at", "pk"]
        constraints = [
            # The same Prolific participant never enrols twice in a study, however many requests race.
            models.UniqueConstraint(fields=["study", "prolific_pid"], condition=~models.Q(prolific_pid=""),
                                    name="participant_unique_prolific_pid"),
        ]
        indexes = [models.Index(fields=["study", "status"]), models.Index(fields=["link"])]

    def __str__(self) -> str:
        return f"{self.study}:{self.display_name}"
