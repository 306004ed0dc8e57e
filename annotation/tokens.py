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
from functools import cache

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
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


@cache
def _token_user_sql(vendor: str) -> tuple[str, list[str], list]:
    """The statement that reads a token's user and issue time by key; the user columns' attnames; and
    per column, the converters the ORM would apply to it (SQLite returns naive datetimes, for one)."""
    q = connection.ops.quote_name
    fields = [*User._meta.concrete_fields, Token._meta.get_field("created")]
    sql = "SELECT {cols}, t.{created} FROM {user} u JOIN {token} t ON t.{user_id} = u.{pk} WHERE t.{key} = %s".format(
        cols=", ".join(f"u.{q(f.column)}" for f in fields[:-1]), created=q(fields[-1].column),
        user=q(User._meta.db_table), token=q(Token._meta.db_table), user_id=q(Token._meta.get_field("user").column),
        pk=q(User._meta.pk.column), key=q(Token._meta.pk.column),
    )
    converters = []
    for f in fields:
        col = f.get_col(f.model._meta.db_table)
        converters.append((col, connection.ops.get_db_converters(col) + f.get_db_converters(connection)))
    return sql, [f.attname for f in fields[:-1]], converters


class ExpiringTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``, refused with 401 once the token is older than ``TOKEN_TTL_HOURS``.

    DRF's checks (unknown key, inactive user: 401) in one hand-written statement instead of
    ``Token.objects.select_related("user").get(key=...)``: every API request authenticates, and
    building that queryset cost 0.4 ms of CPU per request, a tenth of an annotator's ``next``
    (issue 17's load target; docs/results.md).
    """

    def authenticate_credentials(self, key):
        sql, attnames, converters = _token_user_sql(connection.vendor)
        with connection.cursor() as cursor:
            cursor.execute(sql, [key])
            row = cursor.fetchone()
        if row is None:
            raise AuthenticationFailed("Invalid token.")
        row = list(row)
        for i, (col, funcs) in enumerate(converters):
            for func in funcs:
                row[i] = func(row[i], col, connection)
        user = User.from_db(connection.alias, attnames, row[:-1])
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        token = Token.from_db(connection.alias, ["key", "user_id", "created"], [key, user.pk, row[-1]])
        token.user = user
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
