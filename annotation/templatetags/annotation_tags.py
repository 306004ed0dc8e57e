"""Template helpers of the annotation pages."""
import markdown as md
import nh3
from django import template
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def markdown_safe(text: str) -> str:
    """Render staff-written markdown, then sanitise it: instructions reach every annotator's browser."""
    html = md.markdown(text or "", extensions=["extra", "sane_lists"])
    return mark_safe(nh3.clean(html))  # noqa: S308 - nh3 removed scripts, handlers and unsafe URLs


@register.filter
def percent(done: int, total: int) -> int:
    """Whole percent of ``done`` over ``total`` (0 when there is nothing to do)."""
    return round(100 * done / total) if total else 0


@register.filter
def staff_name(username: str, names: dict | None) -> str:
    """The name staff see for ``username``: a participant's display name and Prolific id from ``names``
    (``participants.staff_names``), else the username itself. Escaped by the template like any text."""
    return (names or {}).get(username, username)
