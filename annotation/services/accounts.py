"""Annotator accounts: who staff may add to a study, and who may set a password (docs/security.md)."""


from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from ..models import Study
from .base import User


class AccountRefused(ValueError):
    """A change to an account that the rules forbid, or a password the validators refuse.

    ``field`` names the input at fault ("username" or "password") for forms and the API.
    """

    def __init__(self, message: str, *, field: str = "username"):
        self.field = field
        super().__init__(message)


def password_validate(*, password: str, user) -> None:
    """Run Django's ``AUTH_PASSWORD_VALIDATORS`` on ``password`` for ``user`` (saved or not).

    Raises AccountRefused with the validators' own messages ("This password is too short. ...").
    """
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    if not isinstance(password, str) or not password:
        raise AccountRefused("password must not be empty", field="password")
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise AccountRefused(" ".join(exc.messages), field="password") from exc


@transaction.atomic
def account_password_set(*, user, password: str, actor) -> None:
    """Set ``user``'s password: only the account's owner or a superuser may, and it must pass the validators.

    ``actor`` is the user asking (None: nobody, refused). Raises AccountRefused. Saving the new
    password revokes the user's API tokens (``annotation.signals``).
    """
    if actor is None or not (actor.pk == user.pk or actor.is_superuser):
        raise AccountRefused(
            f"only {user.get_username()!r} or a superuser may change this account's password"
        )
    password_validate(password=password, user=user)
    user.set_password(password)
    user.save(update_fields=["password"])


@transaction.atomic
def annotator_add(*, username: str, password: str | None, study: Study | None) -> User:
    """Create an annotator account, or take an existing non-staff one, and give them ``study``.

    The one home of the account rule for staff (API, staff page, ``add_annotator``): they may
    create annotator accounts (a plain user; its password must pass ``AUTH_PASSWORD_VALIDATORS``,
    or with ``password=None`` it gets no usable password) and add existing non-staff accounts to
    a study, but never change an existing account's credentials or privileges: a password for
    an existing username, or a staff or superuser account, is refused with AccountRefused (a
    ValueError). Passwords are changed by their owner or a superuser (``account_password_set``,
    the admin, ``manage.py changepassword``).
    """
    username = User.normalize_username((username or "").strip())  # NFKC, as Django's login form reads it
    if not username:
        raise AccountRefused("username must not be empty")
    if len(username) > 150:
        raise AccountRefused("username must be at most 150 characters")
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError as exc:
        raise AccountRefused(f"{username!r}: {' '.join(exc.messages)}") from None
    # Locked: two staff adding the same new name at once must not both create it.
    user = User.objects.select_for_update().filter(username=username).first()
    if user is None and (twin := User.objects.filter(username__iexact=username).first()) is not None:
        # "ALICE" beside "alice" would be two raters an export cannot tell apart.
        raise AccountRefused(f"{username!r} differs only in case from the existing account {twin.username!r}; "
                             "use that name")
    if user is not None:
        if user.is_staff or user.is_superuser:
            raise AccountRefused(
                f"{username!r} is a staff account; only plain accounts can be made annotators here"
            )
        if password:
            raise AccountRefused(
                f"{username!r} already has an account: leave the password empty to add it to the study; "
                "only its owner or a superuser can change its password",
                field="password",
            )
    else:
        user = User(username=username)
        if password is None:
            user.set_unusable_password()
        else:
            password_validate(password=password, user=user)
            user.set_password(password)
        try:
            with transaction.atomic():  # a savepoint: the caller's transaction survives a lost race
                user.save()
        except IntegrityError:
            # Another request created the same name between our look-up and this insert (a row
            # that does not exist yet cannot be locked): the same answer as for an existing account.
            raise AccountRefused(f"{username!r} was just created by another request; add it again without "
                                 "a password to give it the study") from None
    if study is not None:
        study.annotators.add(user)
    return user
