"""Forms of the annotator and staff pages: they parse and validate, services change data."""
from django import forms

from common.forms import SingleValueFieldsMixin

from .models import COMMENT_MAX_CHARS, CONFIDENCE_MAX, CONFIDENCE_MIN, Question
from .services import Answer

# What an annotator picks per question (paper section 5.5, Table 5). The values are the sides
# as shown; the service maps them to baseline / challenger with the stored side.
CHOICES = [("A", "Response A is better"), ("B", "Response B is better"), ("S", "Similar")]
CONFIDENCE_ENDS = {CONFIDENCE_MIN: "not confident", CONFIDENCE_MAX: "very confident"}
CONFIDENCES = [
    (c, f"{c} · {CONFIDENCE_ENDS[c]}" if c in CONFIDENCE_ENDS else str(c))
    for c in range(CONFIDENCE_MIN, CONFIDENCE_MAX + 1)
]


class RatingForm(SingleValueFieldsMixin, forms.Form):
    """One choice and one confidence per question; every question must be answered.

    Field names are ``<question key>-choice`` and ``<question key>-confidence`` so the no-JS form,
    the htmx form and the tests post the same thing. ``comment`` is the annotator's optional
    free text on the item (issue 21). Unbound, the form shows ``initial`` (an earlier item's
    current answers, to change them).
    """

    comment = forms.CharField(
        required=False, max_length=COMMENT_MAX_CHARS, strip=True, label="Comment (optional)",
        widget=forms.Textarea(attrs={"rows": 2, "maxlength": COMMENT_MAX_CHARS, "dir": "auto", "aria-describedby": "comment-help"}),
        error_messages={"max_length": f"Comment: at most {COMMENT_MAX_CHARS} characters, please."},
    )

    def __init__(self, *args, questions: list[dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.questions = questions
        for q in questions:
            label = q.get("label") or q["key"]
            self.fields[f"{q['key']}-choice"] = forms.ChoiceField(
                choices=CHOICES,
                error_messages={
                    "required": f"{label}: choose Response A, Response B or Similar.",
                    "invalid_choice": f"{label}: choose Response A, Response B or Similar.",
                },
            )
            self.fields[f"{q['key']}-confidence"] = forms.TypedChoiceField(
                choices=CONFIDENCES,
                coerce=int,
                error_messages={
                    "required": f"{label}: choose a confidence from {CONFIDENCE_MIN} to {CONFIDENCE_MAX}.",
                    "invalid_choice": f"{label}: choose a confidence from {CONFIDENCE_MIN} to {CONFIDENCE_MAX}.",
                },
            )

    def answers(self) -> list:
        """The cleaned answers in question order, as the rating service takes them."""
        return [
            Answer(
                question=q["key"],
                choice=self.cleaned_data[f"{q['key']}-choice"],
                confidence=self.cleaned_data[f"{q['key']}-confidence"],
            )
            for q in self.questions
        ]

    def add_service_errors(self, errors: dict) -> None:
        """Attach the service's ``RatingInvalid.errors`` (field -> message) to the right question."""
        keys = {q["key"] for q in self.questions}
        for field, message in errors.items():
            key = str(field).split("-")[0].split(".")[0]
            if field == "comment":
                self.add_error("comment", message)
            elif key in keys:
                target = f"{key}-confidence" if "confidence" in str(field) else f"{key}-choice"
                self.add_error(target, message)
            else:
                self.add_error(None, message)

    def rows(self) -> list[dict]:
        """What the template draws per question: text, current values (kept after an error), errors."""
        rows = []
        for q in self.questions:
            key = q["key"]
            choice_name, confidence_name = f"{key}-choice", f"{key}-confidence"
            values = self.data if self.is_bound else self.initial
            choice = values.get(choice_name, "")
            confidence = str(values.get(confidence_name, ""))
            errors = []
            if self.is_bound:
                errors = [*self.errors.get(choice_name, []), *self.errors.get(confidence_name, [])]
            rows.append(
                {
                    "key": key,
                    "label": q.get("label") or key,
                    "text": q["text"],
                    "choice_name": choice_name,
                    "confidence_name": confidence_name,
                    "choices": [{"value": v, "label": text, "checked": v == choice} for v, text in CHOICES],
                    "confidences": [
                        {"value": v, "label": text, "checked": str(v) == confidence} for v, text in CONFIDENCES
                    ],
                    "errors": errors,
                }
            )
        return rows


class InstructionsForm(SingleValueFieldsMixin, forms.Form):
    instructions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12}),
        required=False,
        help_text="Markdown. Annotators see the instructions again before their next item when they change.",
    )


class QuestionForm(SingleValueFieldsMixin, forms.ModelForm):
    class Meta:
        model = Question
        fields = ["label", "text"]
        widgets = {"text": forms.Textarea(attrs={"rows": 3})}


QuestionFormSet = forms.modelformset_factory(Question, form=QuestionForm, extra=0, can_delete=False)


class AnnotatorAddForm(SingleValueFieldsMixin, forms.Form):
    username = forms.CharField(max_length=150)
    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        help_text="For a new account only. Leave empty to add an existing (non-staff) account; "
        "only its owner or a superuser can change its password.",
    )


class StudyPlanForm(forms.Form):
    """Size a study before it runs (issue 20): the inputs of ``reports.planner.study_plan``."""

    gap = forms.FloatField(min_value=0.01, max_value=0.99, initial=0.2,
                           help_text="Gap 2w - 1 to detect, w the challenger's win rate among decisive labels (0.2: w = 0.6).")
    tie_share = forms.FloatField(min_value=0.0, max_value=0.99, initial=0.6, label="Expected share of 'similar'")
    overlap = forms.IntegerField(min_value=1, max_value=10, initial=3, label="Raters per item")
    labelled_share = forms.FloatField(min_value=0.01, max_value=1.0, initial=0.9,
                                      label="Expected share of items with a majority label")
    items_per_rater = forms.IntegerField(min_value=1, initial=200)

    def plan(self) -> dict:
        """The plan for the cleaned inputs (call after ``is_valid()``)."""
        # lazy: statsmodels takes seconds to import; only the planner form uses it
        from .planner import study_plan

        return study_plan(**self.cleaned_data)
