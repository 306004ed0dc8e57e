from django.db import models


class Job(models.Model):
    """A launched unit of work. Its state lives here, in the database, not only in Celery."""

    class Kind(models.TextChoices):
        IMPORT = "import", "Import dataset"
        AUGMENT = "augment", "Generic-response augmentation"
        ICL = "icl", "ICL baseline"
        TRAIN = "train", "Train"
        GENERATE = "generate", "Generate"
        METRICS = "metrics", "Metrics"
        STUDY = "study", "Create study"
        JUDGE = "judge", "LLM judge"
        PIPELINE = "pipeline", "Pipeline"
        PING = "ping", "Ping"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    celery_id = models.CharField(max_length=64, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    rate = models.FloatField(null=True, blank=True, help_text="Units per second.")
    eta_seconds = models.FloatField(null=True, blank=True)
    log_tail = models.TextField(blank=True)
    result = models.JSONField(default=dict, blank=True, help_text="What it produced: ids and summaries.")
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False, help_text="Cooperative stop flag the loops check.")
    worker_host = models.CharField(max_length=200, blank=True)
    device = models.CharField(max_length=50, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"
