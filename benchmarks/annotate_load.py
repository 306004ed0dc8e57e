"""N concurrent annotators over HTTP against gunicorn on PostgreSQL, then a check of the database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/annotate_load.py \
        [--annotators 50] [--items 200] [--overlap 3] [--workers 4] [--think-ms 1000] [--kill-worker-at 0]

A fresh database (``--database``, default ``grag_bench_annotate``) is created on the server of
DATABASE_URL, migrated and given a study of ``--items`` items and ``--annotators`` annotators.
gunicorn (production settings, ``--workers`` sync workers) serves it on a free loopback port.
Each annotator is a thread with its own httpx client and API token that loops
``POST next`` / think / ``POST ratings`` until it gets 204. ``--think-ms`` is the mean pause
before each request (a person reads and clicks; 0 makes a stress test where latency is mostly
queueing). ``--kill-worker-at S`` kills one gunicorn worker S seconds in, to show that clients
retry and nothing is lost or duplicated. Errors and connection failures are retried.

Afterwards the database is checked: every rating a client got a 2xx for is there and current
(``lost``), no (item, rater, question) has more than one row (``duplicates``; clients never
change answers, so any extra row is one), and no item has more than ``overlap`` completed
assignments (``over_overlap``). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
QKEYS = ["q1", "q2", "q3", "q4"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_recreate(server_url: str, name: str) -> str:
    import psycopg

    parts = urlsplit(server_url)
    admin = urlunsplit(parts._replace(path="/postgres")).replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def setup(args, env: dict) -> dict[str, str]:
    """Migrate and create the study and annotators (in this process, before gunicorn starts)."""
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User

    from annotation.models import Item
    from annotation.services import study_create

    study = study_create(slug="load", baseline_name="sys-base", challenger_name="sys-chal", overlap=args.overlap, seed=0)
    Item.objects.bulk_create(
        [
            Item(
                study=study, key=f"item-{i}", persona="I have two dogs.\nI live near the sea.",
                history=[{"role": "user", "text": f"Tell me about your weekend ({i})."}],
                generic_response="It was fine.", baseline_response=f"It was fine, thanks ({i}).",
                challenger_response=f"I walked my two dogs on the beach ({i}).",
            )
            for i in range(args.items)
        ]
    )
    password = make_password("load-pass-123")  # hashed once: the setup is not what is measured
    users = User.objects.bulk_create([User(username=f"ann{i:03d}", password=password) for i in range(args.annotators)])
    study.annotators.add(*users)
    # Tokens made here, not by POST /api/token/: 50 password checks (PBKDF2, deliberately slow)
    # at once would measure the hasher, not annotation.
    from rest_framework.authtoken.models import Token

    tokens = {u.username: Token.objects.create(user=u).key for u in users}
    # Planner statistics, as autovacuum would have them on a database in use; a table filled a
    # moment ago has none, and the planner then guesses one row per table.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return tokens


class Annotator(threading.Thread):
    def __init__(self, name: str, token: str, base: str, args, start_barrier: threading.Barrier):
        super().__init__(daemon=True)
        self.username, self.token, self.base, self.args, self.start_barrier = name, token, base, args, start_barrier
        self.latencies: list[float] = []
        self.acked: set[tuple[str, str]] = set()  # (item, question) the server confirmed
        self.retries = 0
        self.error: str | None = None
        self.rng = random.Random(name)

    def request(self, client, method: str, url: str, **kw):
        """Send, retrying connection errors and 5xx (a killed worker, a restarting database)."""
        for attempt in range(60):
            t0 = time.perf_counter()
            try:
                response = client.request(method, url, **kw)
            except Exception:
                self.retries += 1
                time.sleep(min(0.05 * 2**attempt, 1.0))
                continue
            if response.status_code >= 500:
                self.retries += 1
                time.sleep(min(0.05 * 2**attempt, 1.0))
                continue
            self.latencies.append((time.perf_counter() - t0) * 1000)
            return response
        raise RuntimeError(f"{self.username}: {method} {url} failed 60 times")

    def think(self) -> None:
        if self.args.think_ms > 0:
            time.sleep(self.rng.uniform(0.5, 1.5) * self.args.think_ms / 1000)

    def run(self) -> None:
        import httpx

        try:
            with httpx.Client(base_url=self.base, timeout=30, headers={"Authorization": f"Token {self.token}"}) as client:
                self.start_barrier.wait(timeout=600)
                while True:
                    self.think()
                    r = self.request(client, "POST", "/api/studies/load/next/")
                    if r.status_code == 204:
                        return
                    r.raise_for_status()
                    item = r.json()["item"]
                    choices = [self.rng.choice("ABS") for _ in QKEYS]
                    body = {"answers": [{"question": q, "choice": c, "confidence": self.rng.randint(1, 5)}
                                        for q, c in zip(QKEYS, choices)]}
                    self.think()
                    r = self.request(client, "POST", f"/api/studies/load/items/{item}/ratings/", json=body)
                    if r.status_code not in (200, 201):
                        raise RuntimeError(f"{self.username}: submit answered {r.status_code}: {r.text[:300]}")
                    self.acked.update((item, q) for q in QKEYS)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotators", type=int, default=50)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--overlap", type=int, default=3)
    p.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    p.add_argument("--think-ms", type=float, default=1000, help="mean pause before each request (0: stress test)")
    p.add_argument("--kill-worker-at", type=float, default=0, help="seconds in; kill one gunicorn worker (0: never)")
    p.add_argument("--database", default="grag_bench_annotate")
    p.add_argument("--keep-database", action="store_true")
    args = p.parse_args()

    server = os.environ.get("DATABASE_URL", "")
    if not server.startswith(("postgres://", "postgresql://")):
        sys.exit("set DATABASE_URL to a PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432/postgres)")
    url = database_recreate(server, args.database)
    port = free_port()
    env = {
        **os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "grag_site.settings.production",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "benchmark-only-secret-key-" + "x" * 30),
        "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "false", "CONN_MAX_AGE": "60",
        "LOG_LEVEL": "WARNING",
    }
    tokens = setup(args, env)
    gunicorn = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "grag_site.wsgi:application", "--workers", str(args.workers),
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--graceful-timeout", "5",
         # Load the app once in the master and fork: a busy 2-core machine takes longer than
         # gunicorn's default 30 s to import it in every worker, which then get killed in a loop.
         "--preload", "--timeout", "120"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    try:
        import httpx

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except Exception:
                pass
            if time.monotonic() > deadline or gunicorn.poll() is not None:
                sys.exit("gunicorn did not answer /healthz within 300 s")
            time.sleep(0.2)
        barrier = threading.Barrier(args.annotators + 1)
        clients = [Annotator(name, token, base, args, barrier) for name, token in tokens.items()]
        for c in clients:
            c.start()
        barrier.wait()
        t0 = time.perf_counter()
        killed = None
        while any(c.is_alive() for c in clients):
            if args.kill_worker_at and killed is None and time.perf_counter() - t0 >= args.kill_worker_at:
                workers = subprocess.run(["pgrep", "-P", str(gunicorn.pid)], capture_output=True, text=True).stdout.split()
                if workers:
                    killed = int(workers[0])
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    finally:
        os.killpg(gunicorn.pid, signal.SIGTERM)
        try:
            gunicorn.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(gunicorn.pid, signal.SIGKILL)
            gunicorn.wait()

    from django.db.models import Count, Q

    from annotation.models import Assignment, Item, Rating

    rows = Rating.objects.filter(item__study__slug="load")
    stored = set(rows.filter(is_current=True).values_list("item__public_id", "rater", "question"))
    acked = {(item, c.username, q) for c in clients for item, q in c.acked}
    duplicates = rows.count() - len(set(rows.values_list("item_id", "rater", "question")))
    over = (
        Item.objects.filter(study__slug="load")
        .annotate(n=Count("assignments", filter=Q(assignments__status="completed")))
        .filter(n__gt=args.overlap).count()
    )
    incomplete = (
        Item.objects.filter(study__slug="load")
        .annotate(n=Count("assignments", filter=Q(assignments__status="completed")))
        .filter(n__lt=args.overlap).count()
    )
    latencies = sorted(x for c in clients for x in c.latencies)
    ratings = len(stored) // len(QKEYS)
    result = {
        "annotators": args.annotators,
        "ratings": ratings,
        "throughput_per_s": round(ratings / wall, 2),
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1) if latencies else None,
        "lost": len(acked - stored),
        "duplicates": duplicates,
        "over_overlap": over,
        "incomplete_items": incomplete,
        "items": args.items, "overlap": args.overlap, "requests": len(latencies), "retries": sum(c.retries for c in clients),
        "client_errors": [c.error for c in clients if c.error][:3],
        "workers": args.workers, "think_ms": args.think_ms, "killed_worker": killed, "wall_s": round(wall, 1),
        "completed_assignments": Assignment.objects.filter(item__study__slug="load", status="completed").count(),
    }
    if not args.keep_database:
        from django.db import connections

        connections.close_all()
        import psycopg

        admin = urlunsplit(urlsplit(server)._replace(path="/postgres")).replace("postgres://", "postgresql://", 1)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
    print(json.dumps(result))


if __name__ == "__main__":
    main()
