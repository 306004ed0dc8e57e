"""Fixtures shared by every test: real services, a real Celery worker process, real data paths."""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from common.processes import stop_process_group

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _cache_cleared():
    """Every test starts with an empty cache: no rate-limit counts left by an earlier test."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _login_lockouts_cleared(request):
    """Every test that reaches the database starts with no failed logins counted (django-axes)."""
    names = request.fixturenames
    marker = request.node.get_closest_marker("django_db")
    if "transactional_db" in names or "live_server" in names or (marker and marker.kwargs.get("transaction")):
        request.getfixturevalue("transactional_db")
    elif "db" in names or marker is not None:
        request.getfixturevalue("db")
    else:
        yield
        return
    from axes.utils import reset

    reset()
    yield


def shared_file(relative: str) -> Path:
    """A file of ../shared/data, or skip the test with a clear message when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real dataset file {path} is not present (see ../shared/data/README.md)")
    return path


@pytest.fixture
def celery_worker_process(transactional_db, settings):
    """Start a real `celery worker` process (solo pool) against the test database and broker.

    Needs transactional_db so that rows the test writes are committed and visible to the worker.
    Yields the Popen; the worker is stopped (TERM, then KILL) afterwards.
    """
    yield from start_celery_worker(pool="solo")


def start_celery_worker(*, pool: str = "solo", name: str | None = None, purge: bool = True):
    """Run a worker for the test database and broker; a generator for fixtures (see above).

    ``pool="prefork"`` runs one child process, which a test may kill to lose a worker mid-task.
    ``name``: the worker's node name (``-n name@%h``), so two workers tell apart in Job.worker_host;
    each gets one torch thread. ``purge``: empty the queues first (not for a second worker).
    """
    from django.db import connection

    from grag_site.celery import app

    env = dict(os.environ)
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    env["CELERY_BROKER_URL"] = app.conf.broker_url
    env["CELERY_RESULT_BACKEND"] = str(app.conf.result_backend)
    env["DJANGO_SETTINGS_MODULE"] = "grag_site.settings.test"
    # Import jobs read only IMPORT_ROOTS; tests write their files under the temp folder.
    from django.conf import settings

    env["IMPORT_ROOTS"] = ",".join([*map(str, settings.IMPORT_ROOTS), tempfile.gettempdir()])
    env.pop("TEST_DATABASE_NAME", None)
    if name:
        env["LLM_CPU_THREADS"] = env["OMP_NUM_THREADS"] = "1"
    if purge:
        app.control.purge()
    log = ROOT / "var" / f"test-worker-{os.getpid()}{'-' + name if name else ''}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "grag_site", "worker", "-Q", "cpu,gpu", "--pool", pool, "--concurrency", "1",
         "--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
         *(["-n", f"{name}@%h"] if name else [])],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"celery worker exited early:\n{log.read_text()}")
        if "ready." in log.read_text():
            break
        time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError(f"celery worker did not become ready:\n{log.read_text()}")
    proc.log_path = log
    yield proc
    stop_process_group(proc, timeout=20)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.3):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server():
    """A real llama.cpp server (llama-cpp-python, installed by `make llm-server`) serving the SmolLM2
    GGUF on a free loopback port; yields its base URL (``http://127.0.0.1:<port>/v1``), stopped after the session."""
    import importlib.util

    import httpx

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: run `make llm-server` (make test does)")
    from modeling.llm.loading import smollm2_gguf_path

    port = free_port()
    log = open(ROOT / "var" / f"llama-server-{port}.log", "w")  # noqa: SIM115 (closed below)
    # One thread: the machine's cores are shared with other test processes. n_ctx: the judge's
    # longest SPC prompts are ~1,000 tokens; SmolLM2 was trained to 8,192.
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()), "--model_alias", "smollm2",
         "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_ctx", "4096", "--verbose", "False"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the llama.cpp server exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the llama.cpp server did not answer within 120 s; see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        stop_process_group(proc)
        log.close()
