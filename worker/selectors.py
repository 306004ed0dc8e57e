from django.db.models import QuerySet

from .models import Job


def job_list(*, status: str | None = None, kind: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.select_related("created_by").order_by("-created_at")
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    return jobs


def jobs_active(*, jobs) -> bool:
    """Whether a page showing these jobs should keep polling for progress."""
    return any(j.status in (Job.Status.QUEUED, Job.Status.RUNNING) for j in jobs)
