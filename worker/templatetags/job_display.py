"""Filters for job pages: durations and times to the second."""
from datetime import datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format

from ..display import duration_text, job_duration

register = template.Library()


@register.filter
def duration(value) -> str:
    """A timedelta or a number of seconds as '4 min 05 s'; '' for None."""
    if value is None or value == "":
        return ""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    return duration_text(float(value))


@register.filter
def job_took(job) -> str:
    """How long the job ran (so far, while running)."""
    return duration(job_duration(job))


@register.filter
def when(value: datetime | None) -> str:
    """A time to the second in the site's time zone, e.g. '2026-11-30 06:20:36'."""
    if not value:
        return ""
    return date_format(timezone.localtime(value), "Y-m-d H:i:s")
