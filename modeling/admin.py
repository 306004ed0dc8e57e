"""Admin for datasets and results: read-mostly, since rows come from imports and jobs.

Imported rows are changed by re-importing the file (import_dataset), results by rerunning the
job, so the admin browses and searches them and allows deleting, not hand-editing.
"""
from django.contrib import admin
from django.db.models import Count

from .models import Conversation, Dataset, MetricResult, Response, Sample, System


class ReadOnlyMixin:
    """Everything visible, nothing editable or addable by hand; deleting stays possible."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "conversation_count", "sample_count", "created_at")
    list_filter = ("kind",)
    search_fields = ("name", "description")
    readonly_fields = ("kind", "meta", "created_at")
    fields = ("name", "kind", "description", "meta", "created_at")

    def has_add_permission(self, request):
        return False  # datasets come from import_dataset

    def get_queryset(self, request):
        # Counted in the one list query, not one COUNT per row.
        return super().get_queryset(request).annotate(
            n_conversations=Count("conversations", distinct=True), n_samples=Count("samples", distinct=True)
        )

    @admin.display(description="conversations", ordering="n_conversations")
    def conversation_count(self, obj):
        return obj.n_conversations

    @admin.display(description="samples", ordering="n_samples")
    def sample_count(self, obj):
        return obj.n_samples


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("source_id", "dataset", "split", "source_file", "source_line", "turn_count")
    list_filter = ("dataset", "split")
    list_select_related = ("dataset",)
    search_fields = ("source_id", "agent_persona", "user_persona")
    show_full_result_count = False

    @admin.display(description="turns")
    def turn_count(self, obj):
        return len(obj.turns)


@admin.register(Sample)
class SampleAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("key", "split", "turn_index", "source_line", "short_reference", "has_generic")
    list_filter = ("dataset", "split", "generic_model")
    list_select_related = ("dataset",)
    search_fields = ("key", "reference", "generic_response")
    raw_id_fields = ("conversation",)
    show_full_result_count = False

    @admin.display(description="reference R_P")
    def short_reference(self, obj):
        return obj.reference[:80]

    @admin.display(description="R_G", boolean=True)
    def has_generic(self, obj):
        return bool(obj.generic_response)


@admin.register(System)
class SystemAdmin(admin.ModelAdmin):
    list_display = ("name", "method", "dataset", "backbone", "status", "created_at")
    list_filter = ("method", "status", "dataset")
    list_select_related = ("dataset",)
    search_fields = ("name", "backbone")
    readonly_fields = ("method", "dataset", "backbone", "config", "generation", "status", "checkpoint_dir", "created_at")


@admin.register(Response)
class ResponseAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("system", "sample", "short_text", "created_at")
    list_filter = ("system",)
    list_select_related = ("system", "sample")
    search_fields = ("text", "sample__key", "system__name")
    raw_id_fields = ("sample",)
    show_full_result_count = False

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text[:80]


@admin.register(MetricResult)
class MetricResultAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("system", "name", "split", "value", "sample", "created_at")
    list_filter = ("name", "split", "system")
    list_select_related = ("system", "sample")
    search_fields = ("system__name", "name", "sample__key")
    raw_id_fields = ("sample",)
    show_full_result_count = False
