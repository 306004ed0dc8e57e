"""API tokens that expire and can be revoked (issue 17).

DRF's ``authtoken`` tokens (one per user) with three rules on top:

- a token is good for ``TOKEN_TTL_HOURS`` after it was issued (``Token.created``); past that,
  ``ExpiringTokenAuthentication`` answers 401 "token expired" and deletes it, and
  ``POST /api/token/`` issues a fresh one;
- ``DELETE /api/token/`` (authenticated by that token) revokes it;
- saving a new password or deactivating an account (``is_active`` False) deletes the user's
  token, whoever made the change and however (admin, ``changepassword``, shell, services): the
  ``pre_save``/``post_save`` receivers below compare the stored row with the saved one.
"""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.signals import post_save, pre_save
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed


def token_ttl() -> timedelta:
    """How long a token is good for (``settings.TOKEN_TTL_HOURS``, hours)."""
    return timedelta(hours=settings.TOKEN_TTL_HOURS)


def token_expires(token: Token):
    """When ``token`` stops working (aware datetime)."""
    return token.created + token_ttl()


def token_issue(*, user) -> Token:
    """The user's live token, or a new one when they have none or theirs has expired."""
    token = Token.objects.filter(user=user).first()
    if token is not None and token_expires(token) <= timezone.now():
        token.delete()
        token = None
    if token is None:
        token, _ = Token.objects.get_or_create(user=user)
    return token


def tokens_revoke(*, user) -> int:
    """Delete every API token of ``user``; return how many."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted


class ExpiringTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``, refused with 401 once the token is older than ``TOKEN_TTL_HOURS``."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expires(token) <= timezone.now():
            token.delete()
            raise AuthenticationFailed("Token expired; ask POST /api/token/ for a new one.")
        return user, token


User = get_user_model()


def _remember_credentials(sender, instance, raw=False, update_fields=None, **kwargs):
    """Before a user row is saved: note its stored password hash and active flag."""
    instance._tokens_before = None
    if raw or instance.pk is None:
        return
    if update_fields is not None and not {"password", "is_active"} & set(update_fields):
        return  # last_login and the like: nothing that touches tokens
    instance._tokens_before = User.objects.filter(pk=instance.pk).values_list("password", "is_active").first()


def _revoke_on_change(sender, instance, created=False, raw=False, **kwargs):
    """After a user row is saved: a new password or a deactivation revokes their tokens."""
    before = getattr(instance, "_tokens_before", None)
    instance._tokens_before = None
    if raw or created or before is None:
        return
    password, active = before
    if password != instance.password or (active and not instance.is_active):
        tokens_revoke(user=instance)


pre_save.connect(_remember_credentials, sender=User, dispatch_uid="annotation.tokens.remember")
post_save.connect(_revoke_on_change, sender=User, dispatch_uid="annotation.tokens.revoke")
