"""Settings shared by every environment; everything a deployment changes is read from the environment.

With no variables set, the app runs on embedded defaults: a SQLite file and a Celery broker
over SQLite (kombu's SQLAlchemy transport) under ``var/``, so a machine with nothing but Python
runs the whole app. A lab sets DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis).
"""
import os
import re
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional; real environment variables win

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files: /api/docs/ works offline
    "django_htmx",
    "template_partials",
    "modeling",
    "annotation",
    "judge",
    "reports",
    "worker",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "grag_site.urls"
WSGI_APPLICATION = "grag_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "grag_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            # {% partialdef %} everywhere without {% load partials %}: page and fragment share a template.
            "builtins": ["template_partials.templatetags.partials"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'grag.sqlite3'}"),
}
# Several test runs may share one PostgreSQL server (CI, parallel sessions): let each pick its
# own test database name.
if env("TEST_DATABASE_NAME", default=""):
    DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME")}
elif DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so that a real worker process in the tests sees the test database;
    # one per test run, so that two runs at once do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-grag-{os.getpid()}.sqlite3")}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=0))
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The embedded default serves a web server (several workers or threads) and a Celery worker
    # at once. Without these, 20 parallel annotators got "database is locked" 500s (issue 17):
    # - WAL: readers never block the writer nor the writer the readers;
    # - IMMEDIATE: a transaction takes the write lock when it begins, so two transactions that
    #   both read and then write queue on the busy timeout instead of deadlocking on the lock
    #   upgrade, which SQLite answers at once with SQLITE_BUSY whatever the timeout;
    # - timeout: seconds a writer waits for the lock (SQLITE_TIMEOUT, default 30);
    # - synchronous=NORMAL is safe with WAL (a power cut may lose the last commits, not corrupt).
    _sqlite_options = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite_options.setdefault("timeout", env.int("SQLITE_TIMEOUT", default=30))
    _sqlite_options.setdefault("transaction_mode", "IMMEDIATE")
    _sqlite_options.setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Applied wherever the app sets a password (annotation.services.password_validate).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": env.int("PASSWORD_MIN_LENGTH", default=8)}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Login throttling on every login path (HTML login, /admin/login/, POST /api/token/) with
# django-axes: AxesBackend refuses a login once LOGIN_FAILURE_LIMIT failures were counted for
# the username OR for the client address (each on its own), until LOGIN_COOLOFF_MINUTES after the
# last failure; a successful login clears only the failures of that username from that address
# (common.security.login_failures_clear; axes' own reset on success would also clear other accounts'
# failures from the address, letting one working account unlock guessing of any other). Attempts are
# kept in the database, so every gunicorn worker sees the same counts. docs/security.md.
AUTHENTICATION_BACKENDS = [
    "common.security.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_COOLOFF_MINUTES = env.int("LOGIN_COOLOFF_MINUTES", default=15)
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = False  # see login_failures_clear above
AXES_CLIENT_IP_CALLABLE = "common.security.client_ip"
AXES_LOCKOUT_CALLABLE = "common.security.login_locked_response"
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False
# Lockouts are cleared with manage.py axes_reset / axes_reset_username / axes_reset_ip; the admin
# pages of axes' models (whose add forms create rows from an empty POST) stay off, and successful
# logins are not logged (only failures are counted).
AXES_ENABLE_ADMIN = False
AXES_DISABLE_ACCESS_LOG = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "grag_site" / "static"]

# Refuse oversized uploads and request bodies (vote files, studies) before they reach a view.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = env.int("FILE_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)

# Where datasets, checkpoints, reports and figures go. On several GPU hosts this is a shared folder.
ARTIFACTS_DIR = Path(env("ARTIFACTS_DIR", default=str(BASE_DIR / "var" / "artifacts")))
DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR / "var" / "data")))
# Folders a web-launched import (jobs/launch/import/, the import job) may read, comma-separated.
# A path is resolved (symlinks followed) before the check, so a link out of a root is refused too.
# The import_dataset command, run by someone with a shell, is not limited.
IMPORT_ROOTS = [Path(p).expanduser() for p in env.list("IMPORT_ROOTS", default=[str(DATA_DIR), str(BASE_DIR / "data")])]
# Local folder holding models by name (e.g. MODELS_DIR/facebook/bart-base); the Hugging Face
# cache (HF_HOME) is searched too.
MODELS_DIR = Path(env("MODELS_DIR", default=str(BASE_DIR / "var" / "models")))

# The Django cache holds the API's rate-limit counts. The embedded default lives in each
# process's memory: every gunicorn worker then counts on its own, so a client may get up to
# workers x TOKEN_RATE. With Redis, share the counts: CACHE_URL=redis://host:6379/2 (Django's
# own RedisCache; use a database of its own, not the broker's).
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# POST /api/token/ per client address (good and bad logins alike): N/second, N/minute, N/hour or N/day.
TOKEN_RATE = env("TOKEN_RATE", default="10/minute")
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", TOKEN_RATE):
    raise ImproperlyConfigured(f"TOKEN_RATE must look like 10/minute (N/second|minute|hour|day), got {TOKEN_RATE!r}")

# Hours an API token from POST /api/token/ is good for; then the client asks for a new one.
TOKEN_TTL_HOURS = env.float("TOKEN_TTL_HOURS", default=24)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # DRF's tokens with a lifetime (TOKEN_TTL_HOURS), revoked by DELETE /api/token/, a new
        # password or a deactivation (annotation/tokens.py).
        "annotation.tokens.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's own parsers, with a JSON one that answers 400 (not 500) to JSON nested too deeply.
    "DEFAULT_PARSER_CLASSES": [
        "common.parsers.JSONBodyParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"token": TOKEN_RATE},
    # Reverse proxies in front of the app that append the client's address to X-Forwarded-For
    # (1 behind one nginx). 0 ignores the header, which a client could otherwise forge to
    # escape the rate limit; behind a proxy, 0 counts every client as the proxy.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GRAG evaluation API",
    "DESCRIPTION": "Blinded A/B evaluation of personalised dialogue responses (GRAG).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's JS and CSS from the drf-spectacular-sidecar package, not a CDN (issue 22).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery. Embedded default: kombu's SQLAlchemy transport over a SQLite file, no server needed.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}")
CELERY_RESULT_BACKEND = env(
    "CELERY_RESULT_BACKEND", default=f"db+sqlite:///{VAR_DIR / 'celery-results.sqlite3'}"
)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TRACK_STARTED = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Long GPU work: a task is acknowledged only when done, and redelivered if its worker dies.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
# A task past its soft limit gets SoftTimeLimitExceeded inside its loop: the job is marked failed
# with that error and keeps its checkpoints, so Retry resumes it. The hard limit kills it later.
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=48 * 3600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=49 * 3600)
CELERY_TASK_DEFAULT_QUEUE = "cpu"
# Model work goes to the `gpu` queue (one worker per GPU, prefetch 1); the rest to `cpu`.
CELERY_TASK_ROUTES = {
    "worker.train*": {"queue": "gpu"},
    "worker.generate*": {"queue": "gpu"},
    "worker.augment*": {"queue": "gpu"},
    "worker.icl*": {"queue": "gpu"},
    "worker.judge*": {"queue": "gpu"},
    "worker.metrics*": {"queue": "gpu"},
    "*": {"queue": "cpu"},
}
# Seconds a publish may wait for the broker before the launch fails with a clear error.
# visibility_timeout (Redis): a task taken by a worker that vanished whole (host lost, not just a
# pool process) goes back to the queue after this many seconds; keep it above the longest task.
CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):  # the SQLAlchemy transport passes options to its engine
    CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] = env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)
# Judge, augment and ICL jobs split into shards that the queue's free workers run in parallel
# (worker/shards.py, docs/llm.md): at most JOB_SHARDS by default (set it to the number of workers
# on the queue; 1 keeps a job on one worker), one per JOB_SHARD_MIN_UNITS items or samples.
JOB_SHARDS = env.int("JOB_SHARDS", default=1)
JOB_SHARD_MIN_UNITS = env.int("JOB_SHARD_MIN_UNITS", default=8)
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
