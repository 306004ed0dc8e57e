from django.contrib import admin, messages

from .models import Job
from .services import BrokerUnavailable, job_cancel, job_retry


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "progress_done", "progress_total", "worker_host", "created_at", "finished_at")
    list_filter = ("kind", "status")
    readonly_fields = [f.name for f in Job._meta.fields]
    actions = ["cancel_jobs", "retry_jobs"]

    def has_add_permission(self, request) -> bool:
        return False  # jobs come from job_launch (the launch forms), never from an empty admin form

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request, queryset):
        for job in queryset:
            job_cancel(job=job)
        self.message_user(request, f"Asked {queryset.count()} job(s) to stop.")

    @admin.action(description="Retry selected failed/cancelled jobs")
    def retry_jobs(self, request, queryset):
        for job in queryset:
            try:
                job_retry(job=job)
            except (ValueError, BrokerUnavailable) as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
