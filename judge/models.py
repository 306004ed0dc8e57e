from django.db import models

from .reliability import DEFAULT_MIN_OPTION_MASS, reliability_label


class JudgeRun(models.Model):
    """An LLM judge answering a study's questions; its verdicts are Ratings with rater=name."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled (resumable)"

    name = models.CharField(max_length=150, unique=True, help_text="Becomes the rater name, e.g. LLM-145.")
    study = models.ForeignKey("annotation.Study", on_delete=models.CASCADE, related_name="judge_runs")
    model_id = models.CharField(max_length=300)
    prompt_version = models.CharField(max_length=50)
    prompt_text = models.TextField(blank=True, help_text="The prompt template as used.")
    settings = models.JSONField(default=dict, blank=True, help_text="Quantisation, batch size, limit, seed.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    summary = models.JSONField(default=dict, blank=True, help_text="Consistency per question, failures, seconds.")
    min_option_mass = models.FloatField(
        default=DEFAULT_MIN_OPTION_MASS,
        help_text="A verdict whose option letters got less of the next-token probability abstains (docs/judge.md).",
    )
    reliability = models.JSONField(
        default=dict, blank=True,
        help_text="Verdict (reliable / warnings / unreliable), reasons and figures, set when the run finishes.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name

    @property
    def reliability_verdict(self) -> str:
        """reliable / warnings / unreliable, or "" for a run not finished since reliability was assessed."""
        return (self.reliability or {}).get("verdict", "")

    @property
    def reliability_text(self) -> str:
        return reliability_label(self.reliability)


class JudgeVerdict(models.Model):
    """The raw scores of one (item, question, order): kept beside each verdict for audit and resume."""

    run = models.ForeignKey(JudgeRun, on_delete=models.CASCADE, related_name="verdicts")
    item = models.ForeignKey("annotation.Item", on_delete=models.CASCADE, related_name="+")
    question = models.CharField(max_length=20)
    baseline_side = models.CharField(max_length=1, help_text="Side the baseline was shown on in this order.")
    probabilities = models.JSONField(default=dict, help_text='{"A": p, "B": p, "S": p}')
    raw = models.JSONField(default=dict, blank=True, help_text="Prompt hash, token ids, optional rationale.")
    option_mass = models.FloatField(
        null=True, blank=True, help_text="Probability of the option tokens before renormalising (null: not measured).")
    abstained = models.BooleanField(default=False, help_text="Option mass below the run's minimum: never a Rating.")
    failed = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "item", "question", "baseline_side"], name="verdict_unique"),
        ]
