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


# --------------------------------------------------------------------------- accounts (issue 17)

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.admin import UserAdmin  # noqa: E402

User = get_user_model()


class AccountAdmin(UserAdmin):
    """Django's user admin under the account rule of ``annotation.services.annotator_add``.

    Staff who are not superusers may look at accounts and change their own, but never another
    account's password, flags, groups or permissions, nor delete a staff or superuser account:
    only the owner or a superuser changes a password (docs/security.md). Superusers keep
    Django's admin as it is.
    """

    def has_change_permission(self, request, obj=None):
        if obj is not None and not request.user.is_superuser and obj.pk != request.user.pk:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and not request.user.is_superuser and (obj.is_staff or obj.is_superuser):
            return False
        return super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            # Their own account too: no one raises their own privileges.
            fields += ["is_staff", "is_superuser", "groups", "user_permissions"]
        return fields


if admin.site.is_registered(User):
    admin.site.unregister(User)
admin.site.register(User, AccountAdmin)


# Credentials and privileges: only superusers reach them in the admin. A staff user holding Django's
# model permissions for groups or DRF's tokens could otherwise give a group (their own) every
# permission, or create and read another account's API token, superuser included (review of issue 17).
from django.contrib.auth.admin import GroupAdmin  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from rest_framework.authtoken.admin import TokenAdmin  # noqa: E402
from rest_framework.authtoken.models import TokenProxy  # noqa: E402


class SuperuserOnly:
    """Admin mixin: the model's pages exist for superusers only; staff do not even see them listed."""

    def has_module_permission(self, request):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    has_add_permission = has_module_permission

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    has_delete_permission = has_change_permission


class GroupSuperuserAdmin(SuperuserOnly, GroupAdmin):
    pass


class TokenSuperuserAdmin(SuperuserOnly, TokenAdmin):
    pass


for model, model_admin in ((Group, GroupSuperuserAdmin), (TokenProxy, TokenSuperuserAdmin)):
    if admin.site.is_registered(model):
        admin.site.unregister(model)
    admin.site.register(model, model_admin)
