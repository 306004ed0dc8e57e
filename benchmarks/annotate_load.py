"""N concurrent annotators over HTTP against gunicorn on PostgreSQL, then a check of the database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/annotate_load.py \
        [--annotators 50] [--items 200] [--overlap 3] [--workers 4] [--think-ms 1000] [--kill-worker-at 0]

    # faults: a private PostgreSQL cluster, one worker SIGKILLed at 8 s, the database restarted at 20 s
    .venv/bin/python benchmarks/annotate_load.py --items 300 --think-ms 300 --kill-worker-at 8 --restart-db-at 20

    # the embedded default (issue 17): a fresh SQLite file, 20 annotators, zero errors expected
    .venv/bin/python benchmarks/annotate_load.py --sqlite --annotators 20 --items 100

With ``--sqlite`` the database is a fresh SQLite file in a temporary folder, with the settings the
app uses for its embedded default (WAL, immediate transactions, a busy timeout: see
docs/security.md); DATABASE_URL is not needed. ``errors_seen`` (5xx and connection errors the
clients saw and retried) and ``server_errors_logged`` (500s in gunicorn's log) are reported in
every run; on the embedded default both must be 0.

A fresh database (``--database``, default ``grag_bench_annotate``) is created on the server of
DATABASE_URL, migrated and given a study of ``--items`` items and ``--annotators`` annotators.
gunicorn (production settings, ``--workers`` processes, sync workers or with ``--threads`` > 1
gthread workers, CONN_MAX_AGE 60; ``common.web_server.Gunicorn``) serves it on a free loopback
port. Each annotator has its own connection and API token and loops ``POST next`` / think /
``POST ratings`` until it gets 204. ``--think-ms`` is the mean pause before each request (a
person reads and clicks; 0 makes a stress test where latency is mostly queueing). A connection
error or a 5xx is retried with a capped, jittered backoff: both API calls are safe to repeat
(``next`` returns the live reservation; a repeated submit of the same answers stores nothing and
answers 200).

The clients are asyncio tasks in one thread (``benchmarks/simulated_annotator.py``), each with its
own aiohttp.ClientSession (one connection, keep-alive when the server offers it), not 100 threads
with httpx: the benchmark measures the server, and its clients share the machine's cores with it.
Client CPU per request on the 2-core machine: 100 httpx threads 3.0 ms, httpx.AsyncClient 2.6 ms,
aiohttp 1.0-1.1 ms with a new connection per request (sync workers) and 0.7-0.8 ms on kept-alive
connections (gthread workers), next to the server's 5.5 ms and PostgreSQL's 3 ms. A home-made
HTTP/1.1 client was 0.3-0.4 ms cheaper still; for code outside what the project is for, the team
keeps a well-kept library (issue 17; docs/results.md). ``cpu_ms_per_request`` in the
output says where the CPU went: ``client`` (this process), ``server`` (the gunicorn workers) and
``database`` (the PostgreSQL backends of the benchmark database, when the server runs on this
machine; SQLite runs inside the workers), from /proc over the load, divided by the requests.
``loadavg_1min_before_after`` tells whether something else ran on the machine.

Faults, to show that clients retry and nothing is lost or duplicated:

- ``--kill-worker-at S``: SIGKILL one gunicorn worker S seconds in.
- ``--restart-db-at S``: ``pg_ctl restart -m fast`` the database S seconds in (the restart breaks
  the workers' live connections). This needs a database the script may restart, so it runs on a
  PRIVATE PostgreSQL cluster it creates itself (initdb into a temporary folder under
  /usr/lib/postgresql/*/bin, pg_ctl start on a free port, trust auth, run as the ``postgres`` user
  when started as root), never on the server of DATABASE_URL; the cluster is stopped and deleted
  at the end. ``--private-postgres`` uses such a cluster without a restart (DATABASE_URL is then
  not needed).
- ``--timeout S``: stop the clients after S seconds of load (0: never).

Afterwards the database is checked: every rating a client got a 2xx for is there and current
(``lost``), no (item, rater, question) has more than one row (``duplicates``; clients never
change answers, so any extra row is one), and no item has more than ``overlap`` completed
assignments (``over_overlap``). Prints one JSON line; with a fault asked for it also has
``errors_seen`` (connection errors and 5xx the clients saw), ``server_errors_logged`` (500s in
gunicorn's log), ``killed_at_s``, ``db_restart_at_s``, ``db_restart_s`` and
``submits_before_db_restart``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from private_postgres import PrivatePostgres  # noqa: E402  (benchmarks/, next to this script)
from simulated_annotator import QKEYS, Annotator  # noqa: E402

from common.web_server import Gunicorn, process_cpu_s  # noqa: E402


def admin_url(server_url: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path="/postgres")).replace("postgres://", "postgresql://", 1)


def database_recreate(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url(server_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


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
    from django.db import connection, connections

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    # Our own connection must hold nothing during the run (and a database restart would break it).
    connections.close_all()
    return tokens


def database_backends_cpu_s(url: str | None, name: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to database ``name`` (server on this machine), by pid."""
    if url is None:
        return {}
    import psycopg

    try:
        with psycopg.connect(admin_url(url), autocommit=True, connect_timeout=5) as conn:
            pids = [pid for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name])]
    except psycopg.Error:
        return {}
    return {pid: process_cpu_s(pid) for pid in pids}


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two snapshots of processes by pid; a process new since ``before`` counts from 0."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


async def load(args, clients: list[Annotator], gunicorn: Gunicorn, pg, db_url: str | None, db_name: str) -> dict:
    """Run the annotators to the end (or ``--timeout``) with the faults asked for; timings and CPU time."""
    await asyncio.gather(*(c.open() for c in clients))
    stop = clients[0].stop
    cpu0 = {"client": time.process_time(), "server": gunicorn.workers_cpu_s(),
            "database": database_backends_cpu_s(db_url, db_name)}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    tasks = [asyncio.create_task(c.run()) for c in clients]
    killed, restart_s, submits_before_restart = None, None, None
    while not all(t.done() for t in tasks):
        now = time.perf_counter() - t0
        if args.kill_worker_at and killed is None and now >= args.kill_worker_at:
            workers = gunicorn.worker_pids()
            if workers:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
        if args.restart_db_at and restart_s is None and now >= args.restart_db_at:
            submits_before_restart = sum(c.submits for c in clients)
            restart_s = await asyncio.to_thread(pg.restart)
        if args.timeout and now > args.timeout:
            stop.set()
            break
        await asyncio.sleep(0.05)
    await asyncio.wait(tasks, timeout=60)
    wall = time.perf_counter() - t0
    requests = sum(len(c.latencies) for c in clients) or 1
    cpu_s = {
        "client": time.process_time() - cpu0["client"],
        "server": cpu_used(cpu0["server"], gunicorn.workers_cpu_s()),
        "database": cpu_used(cpu0["database"], database_backends_cpu_s(db_url, db_name)),
    }
    return {
        "t0": t0, "wall": wall, "killed": killed, "restart_s": restart_s, "submits_before_restart": submits_before_restart,
        "cpu_ms_per_request": {k: round(1000 * v / requests, 2) for k, v in cpu_s.items()},
        "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotators", type=int, default=50)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--overlap", type=int, default=3)
    p.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    p.add_argument("--threads", type=int, default=1, help="request threads per worker (> 1: gthread workers, keep-alive)")
    p.add_argument("--think-ms", type=float, default=1000, help="mean pause before each request (0: stress test)")
    p.add_argument("--kill-worker-at", type=float, default=0, help="seconds in; SIGKILL one gunicorn worker (0: never)")
    p.add_argument("--restart-db-at", type=float, default=0,
                   help="seconds in; pg_ctl restart -m fast the database (0: never; implies --private-postgres)")
    p.add_argument("--private-postgres", action="store_true",
                   help="run on a throwaway PostgreSQL cluster made with initdb, not on DATABASE_URL's server")
    p.add_argument("--warmup", type=int, default=2, help="unmeasured GET requests per annotator before the load starts")
    p.add_argument("--trace", default=None, metavar="CSV",
                   help="write every request (seconds since the start, next|submit, ms) to this CSV, to find stalls")
    p.add_argument("--timeout", type=float, default=0, help="stop the clients after this many seconds of load (0: never)")
    p.add_argument("--sqlite", action="store_true",
                   help="run on a fresh SQLite file (the embedded default), not on PostgreSQL")
    p.add_argument("--database", default="grag_bench_annotate")
    p.add_argument("--keep-database", action="store_true", help="leave the database on DATABASE_URL's server")
    args = p.parse_args()
    faults = bool(args.kill_worker_at or args.restart_db_at)
    private = args.private_postgres or bool(args.restart_db_at)
    if args.keep_database and private:
        sys.exit("--keep-database: the private cluster is always deleted")

    if args.sqlite and (private or args.keep_database):
        sys.exit("--sqlite runs on a SQLite file: no --private-postgres, --restart-db-at or --keep-database")
    server = os.environ.get("DATABASE_URL", "")
    if not private and not args.sqlite and not server.startswith(("postgres://", "postgresql://")):
        sys.exit("set DATABASE_URL to a PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
                 " or pass --private-postgres")
    # A TERM (timeout, a supervisor) still stops gunicorn and deletes the private cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))

    pg = PrivatePostgres() if private else None
    gunicorn = None
    try:
        sqlite_dir = Path(tempfile.mkdtemp(prefix="grag-annotate-sqlite-")) if args.sqlite else None
        if sqlite_dir is not None:
            url = f"sqlite:///{sqlite_dir / 'grag-bench.sqlite3'}"
        else:
            url = pg.start(args.database) if pg else database_recreate(server, args.database)
        env = {
            **os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "grag_site.settings.production",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "benchmark-only-secret-key-" + "x" * 30),
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "false", "CONN_MAX_AGE": "60",
            "LOG_LEVEL": "WARNING",
        }
        env.pop("TEST_DATABASE_NAME", None)
        tokens = setup(args, env)
        # Server errors (tracebacks) go to a file; their number is reported.
        log_dir = pg.dir if pg else Path(tempfile.mkdtemp(prefix="grag-annotate-log-"))
        gunicorn = Gunicorn(env=env, log=log_dir / "gunicorn.log", workers=args.workers, threads=args.threads)
        try:
            base = gunicorn.start()
        except RuntimeError as exc:
            sys.exit(str(exc))
        stop = asyncio.Event()
        clients = [Annotator(name, token, base, args, stop) for name, token in tokens.items()]
        run = asyncio.run(load(args, clients, gunicorn, pg, None if args.sqlite else url, args.database))
        t0, wall, killed, restart_s = run["t0"], run["wall"], run["killed"], run["restart_s"]
        gunicorn.stop()
        log_text = gunicorn.log_text()
        gunicorn = None

        from django.db.models import Count, Q

        from annotation.models import Assignment, Item, Rating

        rows = Rating.objects.filter(item__study__slug="load")
        stored = set(rows.filter(is_current=True).values_list("item__public_id", "rater", "question"))
        acked = {(item, c.username, q) for c in clients for item, q in c.acked}
        duplicates = rows.count() - len(set(rows.values_list("item_id", "rater", "question")))
        completed = Item.objects.filter(study__slug="load").annotate(
            n=Count("assignments", filter=Q(assignments__status="completed"))
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
            "over_overlap": completed.filter(n__gt=args.overlap).count(),
            "incomplete_items": completed.filter(n__lt=args.overlap).count(),
            "items": args.items, "overlap": args.overlap, "requests": len(latencies), "retries": sum(c.retries for c in clients),
            "client_errors": [c.error for c in clients if c.error][:3],
            "workers": args.workers, "think_ms": args.think_ms, "killed_worker": killed, "wall_s": round(wall, 1),
            "completed_assignments": Assignment.objects.filter(item__study__slug="load", status="completed").count(),
        }
        result.update({
            "database": "sqlite" if args.sqlite else "postgresql",
            "errors_seen": sum(c.errors_seen for c in clients),
            "server_errors_logged": log_text.count("Internal Server Error"),
            "database_locked_logged": log_text.count("database is locked"),
            "threads": args.threads, "client": "aiohttp",
            "cpu_ms_per_request": run["cpu_ms_per_request"],
            "loadavg_1min_before_after": run["loadavg_1min_before_after"],
        })
        if not pg:
            shutil.rmtree(log_dir, ignore_errors=True)
        if faults:
            result.update({
                "killed_at_s": args.kill_worker_at if killed else None,
                "db_restart_at_s": args.restart_db_at if restart_s is not None else None,
                "db_restart_s": round(restart_s, 2) if restart_s is not None else None,
                "submits_before_db_restart": run["submits_before_restart"],
            })
        if args.timeout:
            result["timed_out"] = stop.is_set()
        from django.db import connections

        connections.close_all()
        if sqlite_dir is not None:
            shutil.rmtree(sqlite_dir, ignore_errors=True)
        elif not pg and not args.keep_database:
            import psycopg

            with psycopg.connect(admin_url(server), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        if args.trace:
            rows = sorted((start - t0, kind, ms) for c in clients for start, kind, ms in c.trace)
            Path(args.trace).write_text("t_s,request,ms\n" + "".join(f"{t:.3f},{k},{ms:.1f}\n" for t, k, ms in rows))
        print(json.dumps(result))
    finally:
        if gunicorn is not None:
            gunicorn.stop()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
