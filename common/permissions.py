"""The one "staff only" rule, for Django views and for DRF views.

Staff are users with ``is_staff``; superuser-only actions are guarded where they happen (the admin).
"""
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django_htmx.http import HttpResponseClientRedirect
from rest_framework.permissions import BasePermission

STAFF_ONLY = "Staff only."


def is_staff(user) -> bool:
    """True for an authenticated user with ``is_staff``."""
    return bool(user and user.is_authenticated and user.is_staff)


def staff_required(view):
    """View decorator: anonymous users go to the login page; logged-in non-staff users get 403."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_staff(request.user):
            raise PermissionDenied(STAFF_ONLY)
        return view(request, *args, **kwargs)

    return wrapped


class IsStaff(BasePermission):
    """DRF permission: staff only; anonymous requests get 401, other users 403."""

    message = STAFF_ONLY

    def has_permission(self, request, view) -> bool:
        return is_staff(request.user)


def login_required_htmx(view):
    """View decorator like Django's ``login_required``; an htmx request whose session ended reloads the
    whole page to log in, instead of swapping the login form into the item."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if request.htmx:
            next_url = request.htmx.current_url_abs_path or request.get_full_path()
            return HttpResponseClientRedirect(redirect_to_login(next_url).url)
        return redirect_to_login(request.get_full_path())

    return wrapped
