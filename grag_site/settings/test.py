"""Tests: fast password hashing; services come from DATABASE_URL / CELERY_BROKER_URL when set."""
import os
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "insecure-test-key")

from .base import *  # noqa: E402,F401,F403
from .base import BASE_DIR, REST_FRAMEWORK, env  # noqa: E402

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests point a worker process at their own tmp folder through the environment.
ARTIFACTS_DIR = Path(env("ARTIFACTS_DIR", default=str(BASE_DIR / "var" / "test-artifacts")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_AUTOREFRESH = True
# Each test run counts in its own memory, whatever CACHE_URL says: parallel runs on one Redis
# would share rate-limit counts, and clearing the cache between tests would empty that Redis
# database. The token rate is raised so that the fuzzer and tests that log in several times
# reach the view; the rate-limit test sets its own low rate.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"token": "10000/minute"}}

if not env("CELERY_BROKER_URL", default=""):
    CELERY_BROKER_URL = f"sqla+sqlite:///{BASE_DIR / 'var' / 'test-celery-broker.sqlite3'}"
if not env("CELERY_RESULT_BACKEND", default=""):
    CELERY_RESULT_BACKEND = f"db+sqlite:///{BASE_DIR / 'var' / 'test-celery-results.sqlite3'}"
