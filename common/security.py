"""Login throttling glue for django-axes (issue 17): who a client is, and what a locked-out login gets.

Every login path (the HTML login, ``/admin/login/``, ``POST /api/token/``) authenticates through
``django.contrib.auth.authenticate(request, ...)``, so ``AxesBackend`` counts failures per
username and per client address (``AXES_LOCKOUT_PARAMETERS``) on all of them alike.
"""
from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check, first in ``AUTHENTICATION_BACKENDS``; ModelBackend then logs in.

    Every HTTP login path passes its request to ``authenticate``. A call without one (the test
    client's ``login``, a shell) is no login over the network and has no address to count: it
    is passed on to the next backend instead of failing, as AxesBackend would.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address by the rule DRF's throttles use (``REST_FRAMEWORK["NUM_PROXIES"]``).

    0 proxies: REMOTE_ADDR (X-Forwarded-For is ignored, since a client could forge it to escape
    the lockout). N proxies: the N-th address from the end of X-Forwarded-For.
    """
    proxies = settings.REST_FRAMEWORK.get("NUM_PROXIES") or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies and forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if hops:
            return hops[-min(proxies, len(hops))]
    return request.META.get("REMOTE_ADDR")


def _lockout_text() -> str:
    minutes = settings.LOGIN_COOLOFF_MINUTES
    return (
        f"Too many failed logins for this account or from this address: try again in {minutes} minutes, "
        "or ask a staff member to unlock it (manage.py axes_reset_username / axes_reset_ip)."
    )


def login_locked_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """429 for a locked-out login (``AXES_LOCKOUT_CALLABLE``): JSON under /api/, a page elsewhere."""
    retry = str(settings.LOGIN_COOLOFF_MINUTES * 60)
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": _lockout_text(), "errors": {"username": _lockout_text()}}, status=429)
    else:
        response = render(request, "registration/locked_out.html", {"message": _lockout_text()}, status=429)
    response["Retry-After"] = retry
    return response


def login_failures_clear(sender, request, user, **kwargs) -> None:
    """``user_logged_in`` receiver: a success forgives that account's own failures from that address only.

    Failures of other usernames from the same address keep counting, so a client that holds one
    working account cannot reset the count of its guesses at another (the address lock still holds),
    and guesses at this account from other addresses keep counting too.
    """
    from axes.models import AccessAttempt

    if request is None:
        return
    AccessAttempt.objects.filter(username=user.get_username(), ip_address=client_ip(request)).delete()
