"""Form helpers shared by the apps' HTML forms."""
from __future__ import annotations

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS

REPEATED = "repeated"


class SingleValueFieldsMixin:
    """Refuse a submission that sends one of the form's fields more than once.

    A browser never does; a hand-made or tampered request may, and a Django form would silently
    keep the last value where the API answers 400 (issue 17). Views answer 400 when
    ``has_repeated_fields()``.
    """

    def clean(self):
        cleaned = super().clean()
        getlist = getattr(self.data, "getlist", None)
        if getlist is not None:
            repeated = sorted(
                name for name in (self.add_prefix(f) for f in self.fields) if len(getlist(name)) > 1
            )
            if repeated:
                raise forms.ValidationError(
                    "Each answer may be sent once; sent more than once: %(fields)s.",
                    code=REPEATED, params={"fields": ", ".join(repeated)},
                )
        return cleaned

    def has_repeated_fields(self) -> bool:
        return self.is_bound and self.has_error(NON_FIELD_ERRORS, code=REPEATED)
