"""The human evaluation of the GRAG paper (section 5.5): blinded A/B studies.

Ratings are stored canonically (baseline / challenger / similar) together with the side the
rater saw, so that blinding and position bias can be audited.
"""
import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

# The paper's four questions (Table 5), exact text.
DEFAULT_QUESTIONS = [
    ("q1", "Naturalness", "Which response makes more sense (grammatically correct, fluent, and coherent) in the context of the conversation?"),
    ("q2", "Accuracy", "Which response is better at correctly reflecting the facts stated in the provided persona without adding contradictory or unmentioned traits?"),
    ("q3", "Value", "Which response adds more valuable personalization beyond what the Generic Response already provides?"),
    ("q4", "Balance", "Which response does better at incorporating the persona without sacrificing the conversation quality in terms of helpfulness, engagement, relevance, or appropriateness?"),
]


def new_public_id() -> str:
    """An opaque, unguessable item id for annotators (never the database id)."""
    return secrets.token_urlsafe(12)


# The confidence scale of every rating, human or LLM (paper section 5.5, Table 5): 1 = not confident,
# 5 = very confident. Forms, serializers, services, the aggregation, reports and the judge read it here.
CONFIDENCE_MIN = 1
CONFIDENCE_MAX = 5


# Bounds of a study's numeric settings: the one place they are stated (security review, finding 6).
# The model fields carry them as validators; ModelSerializers, ModelForms and the services'
# settings check (annotation.services.studies) all run those validators. Without an upper bound a
# reservation of 10**12 minutes overflowed the expiry datetime and every `next` request failed.
STUDY_OVERLAP_MAX = 50  # annotators per item
STUDY_RESERVATION_MINUTES_MAX = 7 * 24 * 60  # a week
STUDY_TOO_FAST_SECONDS_MAX = 3600


def below_one(value) -> None:
    """Validator: ``value`` < 1 (a trap rate of 1 would leave no real item to rate)."""
    if not value < 1:
        raise ValidationError("Ensure this value is less than 1.", code="max_value")


def confidence_in_scale(value) -> bool:
    """Whether ``value`` is a whole number on the confidence scale (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool) and CONFIDENCE_MIN <= value <= CONFIDENCE_MAX


class Study(models.Model):
    slug = models.SlugField(max_length=100, unique=True)
    title = models.CharField(max_length=200, blank=True)
    baseline_name = models.CharField(max_length=200, help_text="System shown to staff as the baseline.")
    challenger_name = models.CharField(max_length=200)
    baseline_system = models.ForeignKey(
        "modeling.System", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    challenger_system = models.ForeignKey(
        "modeling.System", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    overlap = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(STUDY_OVERLAP_MAX)], help_text="Annotators per item.",
    )
    seed = models.IntegerField(default=0)
    min_confidence = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(CONFIDENCE_MIN), MaxValueValidator(CONFIDENCE_MAX)],
        help_text="Ratings below are dropped before the majority vote.",
    )
    instructions = models.TextField(blank=True, help_text="Markdown shown before the first item.")
    instructions_version = models.PositiveIntegerField(default=1)
    reservation_minutes = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(STUDY_RESERVATION_MINUTES_MAX)],
    )
    too_fast_seconds = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(0), MaxValueValidator(STUDY_TOO_FAST_SECONDS_MAX)],
        help_text="Items rated faster are flagged.",
    )
    trap_rate = models.FloatField(
        default=0.0, validators=[MinValueValidator(0.0), below_one], help_text="Share of gold/trap items mixed in.",
    )
    is_open = models.BooleanField(default=True)
    annotators = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="studies")
    meta = models.JSONField(default=dict, blank=True, help_text="Source file, import settings.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "studies"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.slug


class Question(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="questions")
    key = models.CharField(max_length=20)
    label = models.CharField(max_length=100)
    text = models.TextField()
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["order", "key"]
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="question_unique_key")]

    def __str__(self) -> str:
        return f"{self.study}:{self.key}"



class Item(models.Model):
    class Kind(models.TextChoices):
        NORMAL = "normal", "Normal"
        GOLD = "gold", "Gold (known answer)"
        TRAP_IDENTICAL = "trap_identical", "Trap: identical responses"
        TRAP_REPEAT = "trap_repeat", "Trap: repeated with sides swapped"
        ONBOARDING = "onboarding", "Onboarding (known answer, shown only before a participant's first item)"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="items")
    key = models.CharField(max_length=300, help_text="Key in the source file or the sample key.")
    public_id = models.CharField(max_length=32, unique=True, default=new_public_id, editable=False)
    sample = models.ForeignKey("modeling.Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    persona = models.TextField(blank=True)
    history = models.JSONField(default=list, help_text='[{"role": "user"|"agent", "text": ...}]')
    generic_response = models.TextField(blank=True)
    baseline_response = models.TextField()
    challenger_response = models.TextField()
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.NORMAL)
    gold_answers = models.JSONField(default=dict, blank=True, help_text='{"q1": "baseline"|"challenger"|"similar"}')
    repeat_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="repeats")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "key"], name="item_unique_key")]
        indexes = [models.Index(fields=["study", "kind"])]

    def __str__(self) -> str:
        return f"{self.study}:{self.key}"


# The one rule of which items a study's results rest on (docs/crowd.md): normal and gold items
# are rated items: each needs ``overlap`` ratings, every item count, the items table, the judge
# and the study's completion use these. Traps are quality checks mixed into the rated items;
# onboarding items are shown only in a participant's onboarding and are in no count.
RATED_KINDS = (Item.Kind.NORMAL, Item.Kind.GOLD)
TRAP_KINDS = (Item.Kind.TRAP_IDENTICAL, Item.Kind.TRAP_REPEAT)


class Assignment(models.Model):
    """An annotator's reservation of an item, with the side on which the baseline is shown."""

    class Status(models.TextChoices):
        RESERVED = "reserved", "Reserved"
        COMPLETED = "completed", "Completed"
        EXPIRED = "expired", "Expired"
        SKIPPED = "skipped", "Skipped"

    class SkipReason(models.TextChoices):
        """Why an annotator skipped an item (issue 21): the slot goes back to the pool."""

        CANNOT_JUDGE = "cannot_judge", "I cannot judge this item"
        OFFENSIVE = "offensive", "The content is offensive"
        BROKEN = "broken", "The item is broken (missing or garbled text)"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    baseline_side = models.CharField(max_length=1, choices=[("A", "A"), ("B", "B")])
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RESERVED)
    reserved_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    seconds = models.FloatField(null=True, blank=True, help_text="Time from reservation to submit.")
    skip_reason = models.CharField(max_length=20, choices=SkipReason.choices, blank=True)

    class Meta:
        constraints = [
            # No annotator rates an item twice.
            models.UniqueConstraint(fields=["item", "annotator"], name="assignment_unique_item_annotator"),
        ]
        indexes = [models.Index(fields=["item", "status"]), models.Index(fields=["annotator", "status"])]


class Rating(models.Model):
    """One answer to one question for one item, by a human or an LLM rater.

    Append-only: a changed answer adds a row and clears ``is_current`` on the old one; reports
    read the current rows.
    """

    class Choice(models.TextChoices):
        BASELINE = "baseline", "Baseline"
        CHALLENGER = "challenger", "Challenger"
        SIMILAR = "similar", "Similar"

    class RaterKind(models.TextChoices):
        HUMAN = "human", "Human"
        LLM = "llm", "LLM"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="ratings")
    question = models.CharField(max_length=20, help_text="Question key, e.g. q1.")
    rater = models.CharField(max_length=150, help_text="Username, or the judge run's name for an LLM.")
    rater_kind = models.CharField(max_length=8, choices=RaterKind.choices, default=RaterKind.HUMAN)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="ratings"
    )
    assignment = models.ForeignKey(Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="ratings")
    choice = models.CharField(max_length=12, choices=Choice.choices)
    shown_choice = models.CharField(max_length=1, blank=True, help_text="A, B or S as the rater answered it.")
    baseline_side = models.CharField(max_length=1, blank=True, help_text="Side the baseline was shown on.")
    confidence = models.PositiveSmallIntegerField()
    comment = models.TextField(blank=True, default="", help_text="The rater's optional comment on the item (same on each question's row).")
    is_current = models.BooleanField(default=True)
    meta = models.JSONField(default=dict, blank=True, help_text="LLM: probabilities, flags, raw prompt ids.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item", "question", "rater"], condition=models.Q(is_current=True), name="rating_one_current"
            ),
            models.CheckConstraint(condition=models.Q(confidence__gte=CONFIDENCE_MIN, confidence__lte=CONFIDENCE_MAX),
                                   name="rating_confidence_1_5"),
        ]
        indexes = [models.Index(fields=["item", "question", "is_current"])]


# Longest comment or flag text an annotator may send (characters); forms, services and the API check it.
COMMENT_MAX_CHARS = 2000


class Flag(models.Model):
    """An annotator's report to staff that an item has a problem (issue 21); staff mark it resolved."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="flags")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="item_flags")
    comment = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["item", "resolved_at"])]
        constraints = [
            # One open report per annotator and item: a second waits until staff resolve the first (flag spam).
            models.UniqueConstraint(fields=["annotator", "item"], condition=models.Q(resolved_at__isnull=True),
                                    name="flag_one_open_per_annotator_item"),
        ]


class InstructionsConfirmation(models.Model):
    """The latest instructions version an annotator confirmed for a study: asked again only when it changes."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="instructions_confirmations")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    confirmed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["study", "annotator"], name="instructions_confirmation_unique"),
        ]


# Crowd studies (issue 21): links, participants, crowd settings; in their own module.
from .enrolment_models import CrowdSettings, Participant, StudyLink  # noqa: E402, F401
