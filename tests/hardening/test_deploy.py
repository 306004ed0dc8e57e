"""Production settings: `check --deploy` is clean, secrets come only from the environment, CSRF is enforced."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args, env_extra: dict, drop: tuple = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_with_production_settings():
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        env_extra={"DJANGO_SETTINGS_MODULE": "grag_site.settings.production",
                   "SECRET_KEY": "x" * 20 + "a-long-random-production-secret-0123456789", "ALLOWED_HOSTS": "grag.example.org"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    result = _manage(
        "check", env_extra={"DJANGO_SETTINGS_MODULE": "grag_site.settings.production", "ALLOWED_HOSTS": "x"},
        drop=("SECRET_KEY",),
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.django_db
def test_session_posts_without_a_csrf_token_are_rejected():
    User.objects.create_user("admin", password="pw", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.login(username="admin", password="pw")
    response = client.post("/accounts/logout/")
    assert response.status_code == 403
    response = client.post("/jobs/launch/import/", {"kind": "spc", "path": "/tmp"})
    assert response.status_code == 403
