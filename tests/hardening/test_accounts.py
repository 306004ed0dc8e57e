"""Accounts (issue 17, findings 1-4): staff cannot take over accounts, passwords pass Django's
validators, every login path is throttled (django-axes), and API tokens expire and can be revoked.
"""
from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotation import services


def _api(user) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")


# --------------------------------------------------------------------------- finding 1: takeover


def test_staff_cannot_reset_an_existing_accounts_password_superuser_included(world):
    boss = User.objects.create_superuser("boss", password="boss-pass-9871")
    url = f"/api/staff/studies/{world.study_x.slug}/annotators/"
    staff = _api(world.staff)
    for victim, old in ((boss, "boss-pass-9871"), (world.ann_y, "pw-ann-y-123"), (world.staff, "pw-staff-123")):
        r = staff.post(url, {"username": victim.username, "password": "taken-over-7731"}, content_type="application/json")
        assert r.status_code == 400, (victim.username, r.content)
        victim.refresh_from_db()
        assert victim.check_password(old) and not victim.check_password("taken-over-7731")
        field = "username" if victim.is_staff else "password"
        assert field in r.json()["errors"], r.json()
    # The staff page and the command hold the same rule.
    web = Client()
    web.force_login(world.staff)
    r = web.post(reverse("annotation:study_annotator_add", args=[world.study_x.slug]),
                 {"username": "boss", "password": "taken-over-7731"})
    assert r.status_code == 422 and "staff account" in r.content.decode()
    r = web.post(reverse("annotation:study_annotator_add", args=[world.study_x.slug]),
                 {"username": "ann-y", "password": "taken-over-7731"})
    assert r.status_code == 422 and "already has an account" in r.content.decode()
    boss.refresh_from_db()
    assert boss.check_password("boss-pass-9871")
    with pytest.raises(CommandError, match="already has an account"):
        call_command("add_annotator", "ann-y", "--password", "taken-over-7731", stdout=StringIO())
    world.ann_y.refresh_from_db()
    assert world.ann_y.check_password("pw-ann-y-123")


def test_staff_add_existing_plain_accounts_but_never_staff_ones(world):
    url = f"/api/staff/studies/{world.study_x.slug}/annotators/"
    staff = _api(world.staff)
    r = staff.post(url, {"username": "ann-y"}, content_type="application/json")
    assert r.status_code == 201 and world.study_x.annotators.filter(username="ann-y").exists()
    world.ann_y.refresh_from_db()
    assert world.ann_y.check_password("pw-ann-y-123") and not world.ann_y.is_staff
    boss = User.objects.create_superuser("boss", password="boss-pass-9871")
    for name in ("boss", "staffer"):
        r = staff.post(url, {"username": name}, content_type="application/json")
        assert r.status_code == 400 and "staff account" in r.json()["errors"]["username"]
    assert not world.study_x.annotators.filter(username__in=["boss", "staffer"]).exists()
    boss.refresh_from_db()
    assert boss.is_superuser and boss.is_staff


def test_only_the_owner_or_a_superuser_changes_a_password(world):
    boss = User.objects.create_superuser("boss", password="boss-pass-9871")
    with pytest.raises(services.AccountRefused, match="only 'ann-y' or a superuser"):
        services.account_password_set(user=world.ann_y, password="new-pass-5521", actor=world.staff)
    services.account_password_set(user=world.ann_y, password="new-pass-5521", actor=world.ann_y)
    services.account_password_set(user=world.ann_y, password="newer-pass-5522", actor=boss)
    world.ann_y.refresh_from_db()
    assert world.ann_y.check_password("newer-pass-5522")
    with pytest.raises(services.AccountRefused, match="too short"):
        services.account_password_set(user=world.ann_y, password="1", actor=world.ann_y)


# --------------------------------------------------------------------------- finding 3: weak passwords


@pytest.mark.parametrize("password, message", [
    ("1", "This password is too short"),
    ("newcomer", "too similar to the username"),
    ("password123", "too common"),
    ("83920183746", "entirely numeric"),
])
def test_new_passwords_pass_djangos_validators_on_every_path(world, password, message):
    url = f"/api/staff/studies/{world.study_x.slug}/annotators/"
    r = _api(world.staff).post(url, {"username": "newcomer", "password": password}, content_type="application/json")
    assert r.status_code == 400 and message in r.json()["errors"]["password"], r.content
    web = Client()
    web.force_login(world.staff)
    r = web.post(reverse("annotation:study_annotator_add", args=[world.study_x.slug]),
                 {"username": "newcomer", "password": password})
    assert r.status_code == 422 and message in r.content.decode().replace("&#x27;", "'")
    with pytest.raises(CommandError, match=message):
        call_command("add_annotator", "newcomer", "--password", password, stdout=StringIO())
    assert not User.objects.filter(username="newcomer").exists()
    services.annotator_add(username="newcomer", password="a-fine-passphrase-42", study=world.study_x)
    assert Client().login(username="newcomer", password="a-fine-passphrase-42")


# --------------------------------------------------------------------------- finding 2: guessing


def _html_login(client, username, password, **extra):
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


def _admin_login(client, username, password, **extra):
    return client.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"}, **extra)


def _token_login(client, username, password, **extra):
    return client.post("/api/token/", json.dumps({"username": username, "password": password}),
                       content_type="application/json", **extra)


@pytest.mark.parametrize("login", [_html_login, _admin_login, _token_login], ids=["html", "admin", "token"])
def test_password_guessing_is_locked_out_per_username_on_every_login_path(world, settings, login):
    limit = settings.LOGIN_FAILURE_LIMIT
    user = world.staff  # staff, so that /admin/login/ would let the right password in
    for i in range(limit):
        # Each guess from another address: the username alone must lock.
        r = login(Client(), user.username, f"wrong-{i}", REMOTE_ADDR=f"10.0.0.{i + 1}")
        # A refusal, and the failure that reaches the limit already answers "locked".
        assert r.status_code == (429 if i == limit - 1 else (400 if login is _token_login else 200)), (i, r.status_code)
    client = Client()
    r = login(client, user.username, "pw-staff-123", REMOTE_ADDR="10.0.1.1")
    assert r.status_code == 429, "the right password must not get in once the account is locked"
    assert "Too many failed logins" in r.content.decode()
    assert "_auth_user_id" not in client.session
    if login is _token_login:
        assert set(r.json()) == {"detail", "errors"} and r["Retry-After"]
    # Another account from a fresh address is unaffected.
    assert login(Client(), "ann-y", "pw-ann-y-123", REMOTE_ADDR="10.0.2.1").status_code in (200, 302)


def test_password_guessing_is_locked_out_per_address_across_usernames(world, settings):
    limit = settings.LOGIN_FAILURE_LIMIT
    for i in range(limit):
        _html_login(Client(), f"nobody-{i}", "guess", REMOTE_ADDR="10.9.9.9")
    r = _html_login(Client(), "ann-y", "pw-ann-y-123", REMOTE_ADDR="10.9.9.9")
    assert r.status_code == 429
    r = _token_login(Client(), "ann-y", "pw-ann-y-123", REMOTE_ADDR="10.9.9.9")
    assert r.status_code == 429 and "Too many failed logins" in r.json()["detail"]
    assert _html_login(Client(), "ann-y", "pw-ann-y-123", REMOTE_ADDR="10.9.9.10").status_code == 302


def test_the_lockout_is_configurable_and_a_success_clears_the_count(world, settings):
    settings.AXES_FAILURE_LIMIT = 2
    _html_login(Client(), "ann-y", "wrong", REMOTE_ADDR="10.3.0.1")
    assert _html_login(Client(), "ann-y", "pw-ann-y-123", REMOTE_ADDR="10.3.0.1").status_code == 302
    _html_login(Client(), "ann-y", "wrong", REMOTE_ADDR="10.3.0.1")  # one failure since the success
    assert _html_login(Client(), "ann-y", "pw-ann-y-123", REMOTE_ADDR="10.3.0.1").status_code == 302
    _html_login(Client(), "ann-y", "wrong", REMOTE_ADDR="10.3.0.1")
    _html_login(Client(), "ann-y", "wrong", REMOTE_ADDR="10.3.0.1")
    assert _html_login(Client(), "ann-y", "pw-ann-y-123", REMOTE_ADDR="10.3.0.1").status_code == 429
    from axes.utils import reset

    reset(username="ann-y")
    reset(ip="10.3.0.1")
    assert _html_login(Client(), "ann-y", "pw-ann-y-123", REMOTE_ADDR="10.3.0.1").status_code == 302


@pytest.mark.parametrize("login", [_html_login, _admin_login, _token_login], ids=["html", "admin", "token"])
def test_a_success_with_one_account_never_unlocks_guessing_at_another(world, settings, login):
    """Review finding: interleaving logins of a working account reset the address's count of guesses at another."""
    limit = settings.LOGIN_FAILURE_LIMIT
    victim = world.staff
    for _round in range(3):
        for i in range(limit - 1):
            login(Client(), victim.username, f"wrong-{_round}-{i}", REMOTE_ADDR="10.7.0.1")
        _html_login(Client(), "ann-y", "pw-ann-y-123", REMOTE_ADDR="10.7.0.1")  # the attacker's own account
    r = login(Client(), victim.username, "pw-staff-123", REMOTE_ADDR="10.7.0.2")
    assert r.status_code == 429, "12 guesses at one account must lock it, whatever else logged in meanwhile"


# --------------------------------------------------------------------------- finding 4: tokens


def _token(username, password) -> str:
    r = _token_login(Client(), username, password)
    assert r.status_code == 200, r.content
    assert {"token", "expires"} <= set(r.json())
    return r.json()["token"]


def test_a_token_expires_after_its_lifetime(world, settings):
    key = _token("ann-y", "pw-ann-y-123")
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.get("/api/studies/").status_code == 200
    Token.objects.filter(key=key).update(created=timezone.now() - timedelta(hours=settings.TOKEN_TTL_HOURS, minutes=1))
    r = api.get("/api/studies/")
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    fresh = _token("ann-y", "pw-ann-y-123")
    assert fresh != key and Client(HTTP_AUTHORIZATION=f"Token {fresh}").get("/api/studies/").status_code == 200


def test_delete_revokes_the_token(world):
    key = _token("ann-y", "pw-ann-y-123")
    api = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert api.delete("/api/token/").status_code == 204
    assert api.get("/api/studies/").status_code == 401
    assert Client().delete("/api/token/").status_code == 401


def test_a_password_change_or_a_deactivation_revokes_tokens(world):
    key = _token("ann-y", "pw-ann-y-123")
    services.account_password_set(user=world.ann_y, password="brand-new-pass-77", actor=world.ann_y)
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/studies/").status_code == 401
    # The admin's password form too (a superuser changing it).
    key = _token("ann-y", "brand-new-pass-77")
    admin = Client()
    admin.force_login(User.objects.create_superuser("boss", password="boss-pass-9871"))
    r = admin.post(f"/admin/auth/user/{world.ann_y.pk}/password/",
                   {"password1": "admin-set-pass-88", "password2": "admin-set-pass-88", "usable_password": "true"})
    assert r.status_code == 302, r.content.decode()[:2000]
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/studies/").status_code == 401
    # Deactivating a staff account kills its tokens at once.
    staff_key = _token("staffer", "pw-staff-123")
    world.staff.is_active = False
    world.staff.save()
    assert Client(HTTP_AUTHORIZATION=f"Token {staff_key}").get("/api/staff/studies/").status_code == 401
    assert not Token.objects.filter(user=world.staff).exists()
    # A login (last_login saved) does not.
    key = _token("ann-y", "admin-set-pass-88")
    assert Client().login(username="ann-y", password="admin-set-pass-88")
    assert Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/studies/").status_code == 200


def test_staff_cannot_change_another_accounts_password_or_flags_in_the_admin(world):
    """The admin holds the same rule: staff with every model permission (as labs run them)."""
    boss = User.objects.create_superuser("boss", password="boss-pass-9871")
    web = Client()
    web.force_login(world.staff)
    for victim in (boss, world.ann_y):
        r = web.post(f"/admin/auth/user/{victim.pk}/password/",
                     {"password1": "taken-over-7731", "password2": "taken-over-7731", "usable_password": "true"})
        assert r.status_code == 403, (victim.username, r.status_code)
        victim.refresh_from_db()
        assert not victim.check_password("taken-over-7731")
    r = web.post(f"/admin/auth/user/{world.ann_y.pk}/change/", {"username": "ann-y", "is_staff": "on", "is_superuser": "on"})
    world.ann_y.refresh_from_db()
    assert r.status_code == 403 and not world.ann_y.is_staff and not world.ann_y.is_superuser
    # Nor their own flags: a staff member cannot make themselves superuser.
    r = web.post(f"/admin/auth/user/{world.staff.pk}/change/", {
        "username": "staffer", "is_active": "on", "is_staff": "on", "is_superuser": "on",
        "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00", "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00"})
    world.staff.refresh_from_db()
    assert not world.staff.is_superuser, r.status_code
    # A superuser may.
    admin = Client()
    admin.force_login(boss)
    r = admin.post(f"/admin/auth/user/{world.ann_y.pk}/password/",
                   {"password1": "boss-set-pass-661", "password2": "boss-set-pass-661", "usable_password": "true"})
    assert r.status_code == 302
    world.ann_y.refresh_from_db()
    assert world.ann_y.check_password("boss-set-pass-661")


def test_staff_reach_neither_groups_nor_api_tokens_in_the_admin(world):
    """Review finding: staff with every model permission gave their group all permissions and read others' tokens."""
    from django.contrib.auth.models import Group, Permission
    from rest_framework.authtoken.models import Token

    boss = User.objects.create_superuser("boss2", password="boss-pass-9872")
    group = Group.objects.create(name="staffgrp")
    group.permissions.set(Permission.objects.filter(codename__in=["change_group", "view_group"]))
    world.staff.groups.add(group)
    web = Client()
    web.force_login(world.staff)
    r = web.post(f"/admin/auth/group/{group.pk}/change/",
                 {"name": "staffgrp", "permissions": list(Permission.objects.values_list("pk", flat=True))})
    assert r.status_code == 403
    assert group.permissions.count() == 2
    assert web.get("/admin/authtoken/tokenproxy/").status_code == 403
    r = web.post("/admin/authtoken/tokenproxy/add/", {"user": boss.pk})
    assert r.status_code == 403 and not Token.objects.filter(user=boss).exists()
    # Superusers keep both pages.
    admin = Client()
    admin.force_login(boss)
    assert admin.get(f"/admin/auth/group/{group.pk}/change/").status_code == 200
    assert admin.get("/admin/authtoken/tokenproxy/").status_code == 200


@pytest.mark.parametrize("name,message", [
    ("bob\u200b", "Enter a valid username"),            # zero-width space
    ("\u202eevil", "Enter a valid username"),           # right-to-left override
    ("<script>x</script>", "Enter a valid username"),
    ("=HYPERLINK(1)", "Enter a valid username"),
    ("ANN-Y", "differs only in case"),                   # beside the existing ann-y
])
def test_usernames_that_look_like_others_or_carry_hidden_characters_are_refused(world, name, message):
    """Review finding: look-alike, invisible-character and case-twin usernames became separate raters."""
    with pytest.raises(services.AccountRefused, match=message):
        services.annotator_add(username=name, password="a-fine-passphrase-42", study=world.study_x)


def test_usernames_are_stored_in_nfkc_as_the_login_form_reads_them(world):
    user = services.annotator_add(username="\uff4aose\u0301", password="a-fine-passphrase-42", study=world.study_x)
    assert user.username == "jos\u00e9"  # full-width j and NFD é become what a login form sends
    assert Client().post("/accounts/login/", {"username": "jos\u00e9", "password": "a-fine-passphrase-42"},
                         REMOTE_ADDR="10.8.0.1").status_code == 302


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_adds_of_one_new_name_give_one_account_and_no_error(world):
    """Review finding (PostgreSQL): a lost race on the insert was an IntegrityError, a 500 on the API."""
    import threading

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: the race needs PostgreSQL (CI runs it)")
    barrier, outcomes = threading.Barrier(20), []

    def add():
        try:
            barrier.wait()
            services.annotator_add(username="racer", password="Very-Long-Pw-123x", study=world.study_x)
            outcomes.append("created")
        except services.AccountRefused:
            outcomes.append("refused")
        except Exception as exc:  # noqa: BLE001 - what the API would have turned into a 500
            outcomes.append(f"error: {exc!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=add) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(outcomes)) <= ["created", "refused"], outcomes
    assert outcomes.count("created") == 1 and User.objects.filter(username="racer").count() == 1
