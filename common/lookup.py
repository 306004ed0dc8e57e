"""Look an object up by its name for a command, failing with a message that lists what exists."""
from django.core.management.base import CommandError


def by_name_or_command_error(queryset, value: str, *, field: str = "name", hint: str = ""):
    """The object of ``queryset`` whose ``field`` equals ``value``.

    Raises CommandError("No system named 'x'. Known systems: a, b, .... <hint>") (or "No study with slug
    'x'. ...") when there is none, listing up to 20 known values so the user can correct a typo.
    """
    obj = queryset.filter(**{field: value}).first()
    if obj is None:
        meta = queryset.model._meta
        values = list(queryset.order_by(field).values_list(field, flat=True)[:21])
        known = (", ".join(values[:20]) + (", ..." if len(values) > 20 else "")) if values else "none yet"
        what = f"named {value!r}" if field == "name" else f"with {field} {value!r}"
        raise CommandError(f"No {meta.verbose_name} {what}. Known {meta.verbose_name_plural}: {known}. {hint}".strip())
    return obj
