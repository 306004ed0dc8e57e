"""Staff see judge runs and their raw verdicts (read-only: runs are created by run_judge or a job)."""
from django.contrib import admin

from .models import JudgeRun, JudgeVerdict


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only run_judge / worker.judge write: an admin form could only make inconsistent ones."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # A deleted run would leave its Ratings behind under its rater name.
        return False


@admin.register(JudgeRun)
class JudgeRunAdmin(ReadOnlyAdmin):
    list_display = ("name", "study", "model_id", "prompt_version", "status", "reliability_verdict", "min_option_mass",
                    "created_at", "finished_at")
    list_filter = ("status", "prompt_version")
    search_fields = ("name", "study__slug", "model_id")
    readonly_fields = [f.name for f in JudgeRun._meta.fields]


@admin.register(JudgeVerdict)
class JudgeVerdictAdmin(ReadOnlyAdmin):
    list_display = ("run", "item", "question", "baseline_side", "option_mass", "abstained", "failed", "created_at")
    list_filter = ("failed", "abstained", "question", "baseline_side")
    search_fields = ("run__name", "item__key")
    readonly_fields = [f.name for f in JudgeVerdict._meta.fields]
    list_select_related = ("run", "item")
