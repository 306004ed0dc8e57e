"""Staff editing of studies (questions and markdown instructions inline) and a read-only look at
items, assignments and ratings: ratings are append-only, so the admin never changes them."""
from django.contrib import admin

from .models import Assignment, Item, Question, Rating, Study


class QuestionInline(admin.TabularInline):
    model = Question
    extra = 0
    fields = ["order", "key", "label", "text"]


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ["slug", "title", "baseline_name", "challenger_name", "overlap", "is_open", "created_at"]
    list_filter = ["is_open"]
    search_fields = ["slug", "title"]
    filter_horizontal = ["annotators"]
    inlines = [QuestionInline]
    readonly_fields = ["instructions_version", "created_at"]

    def save_model(self, request, obj, form, change):
        # Annotators see changed instructions again: the version tells the UI they changed.
        if change and "instructions" in form.changed_data:
            obj.instructions_version += 1
        super().save_model(request, obj, form, change)


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["key", "study", "kind", "public_id"]
    list_filter = ["study", "kind"]
    search_fields = ["key", "public_id"]
    readonly_fields = ["public_id"]
    raw_id_fields = ["sample", "repeat_of"]


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ["item", "annotator", "baseline_side", "status", "reserved_at", "expires_at", "seconds"]
    list_filter = ["status", "item__study"]
    search_fields = ["item__key", "annotator__username"]
    raw_id_fields = ["item", "annotator"]


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = ["item", "question", "rater", "rater_kind", "choice", "shown_choice", "confidence", "is_current", "created_at"]
    list_filter = ["rater_kind", "is_current", "question", "item__study"]
    search_fields = ["item__key", "rater"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False
