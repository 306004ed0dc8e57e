"""Request and response shapes of the annotation API (parse and render only; services do the work)."""
from rest_framework import serializers

from .models import COMMENT_MAX_CHARS, CONFIDENCE_MAX, CONFIDENCE_MIN, RATED_KINDS, Question, Study
from .services import STUDY_EDITABLE


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    expires = serializers.DateTimeField(help_text="When the token stops working (TOKEN_TTL_HOURS after it was issued).")


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField()


class TurnSerializer(serializers.Serializer):
    role = serializers.CharField(help_text='"user" or "agent"')
    text = serializers.CharField(allow_blank=True)


class QuestionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Question
        fields = ["key", "label", "text"]


class AnnotatorStudySerializer(serializers.Serializer):
    """A study as its annotators see it: no system names."""

    slug = serializers.CharField()
    title = serializers.CharField()
    instructions = serializers.CharField(help_text="Markdown.")
    instructions_version = serializers.IntegerField()
    is_open = serializers.BooleanField()
    progress = ProgressSerializer()


class ItemPayloadSerializer(serializers.Serializer):
    """One blinded item: which system wrote response A is never part of it."""

    item = serializers.CharField(help_text="Opaque item id.")
    persona = serializers.CharField(allow_blank=True)
    history = TurnSerializer(many=True)
    generic_response = serializers.CharField(allow_blank=True, help_text="Empty when the study has none.")
    response_a = serializers.CharField()
    response_b = serializers.CharField()
    questions = QuestionSerializer(many=True)
    progress = ProgressSerializer()


class AnswerSerializer(serializers.Serializer):
    question = serializers.CharField(help_text="Question key, e.g. q1.")
    choice = serializers.ChoiceField(choices=["A", "B", "S"], help_text="A better, B better, or S (similar).")
    confidence = serializers.IntegerField(min_value=CONFIDENCE_MIN, max_value=CONFIDENCE_MAX)


class RatingSubmitSerializer(serializers.Serializer):
    answers = AnswerSerializer(many=True)
    comment = serializers.CharField(
        required=False, allow_blank=True, max_length=COMMENT_MAX_CHARS,
        help_text="Optional comment on the item, exported with the ratings; omitted keeps the current one, \"\" clears it.",
    )


class RatingSubmitResultSerializer(serializers.Serializer):
    item = serializers.CharField()
    answers = AnswerSerializer(many=True)
    comment = serializers.CharField(allow_blank=True)
    stored = serializers.IntegerField(help_text="Rows added by this request (0 for a repeated submit).")
    progress = ProgressSerializer()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.CharField(), required=False)


class StudySerializer(serializers.ModelSerializer):
    """A study as staff see and edit it."""

    questions = QuestionSerializer(many=True, required=False)
    items = serializers.ListField(
        child=serializers.JSONField(), write_only=True, required=False,
        help_text="On create: items in the study-file format "
        '({"key", "persona", "history", "generic_response", "responses": {"<system>": "<text>"}}).',
    )
    item_count = serializers.SerializerMethodField()

    class Meta:
        model = Study
        fields = [
            "slug", "title", "baseline_name", "challenger_name", "overlap", "seed", "min_confidence", "instructions",
            "instructions_version", "reservation_minutes", "too_fast_seconds", "trap_rate", "is_open", "questions",
            "items", "item_count", "created_at",
        ]
        read_only_fields = ["instructions_version", "created_at"]

    def get_item_count(self, study: Study) -> int:
        """Rated items (``models.RATED_KINDS``): traps and onboarding items are not counted."""
        return study.items.filter(kind__in=RATED_KINDS).count()


class StudyUpdateSerializer(serializers.ModelSerializer):
    questions = QuestionSerializer(many=True, required=False)

    class Meta:
        model = Study
        fields = [*STUDY_EDITABLE, "questions"]  # what study_update accepts, from its one list


class ItemStateSerializer(serializers.Serializer):
    key = serializers.CharField()
    item = serializers.CharField()
    kind = serializers.CharField()
    completed = serializers.IntegerField()
    reserved = serializers.IntegerField()
    expired = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Annotators who skipped the item (their slots went back to the pool).")
    state = serializers.CharField()


class VoteRowSerializer(serializers.Serializer):
    item_key = serializers.CharField()
    rater = serializers.CharField()
    rater_kind = serializers.CharField()
    question = serializers.CharField()
    choice = serializers.CharField()
    confidence = serializers.IntegerField()
    comment = serializers.CharField(allow_blank=True)


class AnnotatorQualitySerializer(serializers.Serializer):
    annotator = serializers.CharField()
    items = serializers.IntegerField()
    too_fast = serializers.IntegerField()
    pass_rate = serializers.FloatField(allow_null=True)
    checks = serializers.IntegerField()
    consistency = serializers.FloatField(allow_null=True)
    repeats = serializers.IntegerField()
    left_preference = serializers.FloatField(allow_null=True)
    sided_answers = serializers.IntegerField()


class AnnotatorAddSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(required=False, allow_null=True, trim_whitespace=False)


class AnnotatorSerializer(serializers.Serializer):
    username = serializers.CharField()


class AuthorTellSerializer(serializers.Serializer):
    item = serializers.CharField(help_text="Item key.")
    response = serializers.ChoiceField(choices=["baseline", "challenger"])
    match = serializers.CharField(help_text="The text that gives the author away.")
