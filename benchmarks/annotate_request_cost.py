"""CPU and SQL queries per annotator API call (POST next, POST ratings), in the server, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python benchmarks/annotate_request_cost.py \
        [--database grag_bench_annotate_cost] [--annotators 100] [--items 200] [--profile next|submit]

What ``benchmarks/annotate_load.py`` cannot tell on a shared machine: how much work one request
is, apart from the queueing. A fresh database gets the load benchmark's study (``--items`` x
overlap 3, ``--annotators`` annotators with API tokens); then every annotator in turn sends
``POST next`` and ``POST ratings`` until the study is done, straight into the WSGI application
(production settings, CONN_MAX_AGE 60, as gunicorn runs it, minus the HTTP parsing), one request
at a time. For each of the two calls it prints one JSON line with the mean of

- ``server_cpu_ms``: CPU time of this process (Django, DRF, psycopg) per request
  (``time.process_time``, user + system);
- ``db_cpu_ms``: CPU time of the PostgreSQL backend serving the connection
  (``/proc/<pg_backend_pid()>/stat``, user + system, 10 ms ticks: a mean over hundreds of
  requests);
- ``queries``: SQL statements per request (BEGIN/COMMIT/SAVEPOINT included, as
  ``CaptureQueriesContext`` counts them), counted in a separate pass so that the capture's own
  cost stays out of the CPU figures;

and the request count; ``next_none`` is the last ``next`` of each annotator (204, nothing left).
CPU time, not wall-clock time, so that other work on the machine moves the figures less (on a
busy machine they still rise by 20-40%: compare runs made back to back). ``--profile next|submit``
also prints cProfile's 45 most expensive functions of that call, timed in CPU time (sorted by
``PROFILE_SORT``, default cumulative; cProfile itself makes them 3-5x slower); ``--show-sql``
prints the statements of the first request of each kind. The database is dropped at the end.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from annotate_load import QKEYS, admin_url, database_recreate, setup  # noqa: E402


def backend_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call(app, method: str, path: str, token: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request through the WSGI application; (status, body)."""
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "HTTP_HOST": "127.0.0.1", "REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
        "HTTP_AUTHORIZATION": f"Token {token}", "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json" if body else "",
    }
    status = []
    result = app(environ, lambda s, headers, exc_info=None: status.append(int(s.split()[0])))
    try:
        content = b"".join(result)
    finally:
        result.close()
    return status[0], content


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotators", type=int, default=100)
    p.add_argument("--items", type=int, default=200)
    p.add_argument("--overlap", type=int, default=3)
    p.add_argument("--database", default="grag_bench_annotate_cost")
    p.add_argument("--profile", choices=["next", "submit"], default=None)
    p.add_argument("--show-sql", action="store_true", help="print the SQL of the first request of each kind")
    args = p.parse_args()
    server = os.environ.get("DATABASE_URL", "")
    if not server.startswith(("postgres://", "postgresql://")):
        sys.exit("set DATABASE_URL to a PostgreSQL server (e.g. postgres://postgres@127.0.0.1:5432/postgres)")
    url = database_recreate(server, args.database)
    env = {
        "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "grag_site.settings.production",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "benchmark-only-secret-key-" + "x" * 30),
        "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "false", "CONN_MAX_AGE": "60",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.pop("TEST_DATABASE_NAME", None)
    try:
        tokens = setup(SimpleNamespace(items=args.items, annotators=args.annotators, overlap=args.overlap),
                       {**os.environ, **env})
        from django.core.wsgi import get_wsgi_application
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        app = get_wsgi_application()
        stats = {kind: {"server_cpu_s": 0.0, "db_cpu_s": 0.0, "queries": 0, "requests": 0, "statuses": {}}
                 for kind in ("next", "submit", "next_none")}
        profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not waits
        count_queries = False
        # Two rounds over the same kind of study: the first counts queries, the second measures CPU.
        for round_ in ("queries", "cpu"):
            if round_ == "cpu":
                # Same state as the queries round began with: a fresh copy of the study.
                from annotation.models import Assignment, Rating

                Rating.objects.all().delete()
                Assignment.objects.all().delete()
            count_queries = round_ == "queries"
            active = dict(tokens)
            k, item = 0, None
            while active:
                for name, token in list(active.items()):
                    k += 1
                    for kind in ("next", "submit"):
                        if kind == "next":
                            path, body = "/api/studies/load/next/", b""
                        else:
                            choices = "ABS"
                            body = json.dumps({"answers": [{"question": q, "choice": choices[(k + j) % 3],
                                                            "confidence": 1 + (k + j) % 5}
                                                           for j, q in enumerate(QKEYS)]}).encode()
                            path = f"/api/studies/load/items/{item}/ratings/"
                        if count_queries:
                            connection.queries_log.clear()  # it keeps 9,000: past that a capture counts 0
                            with CaptureQueriesContext(connection) as captured:
                                status, content = call(app, "POST", path, token, body)
                        else:
                            connection.ensure_connection()
                            pid = connection.connection.info.backend_pid
                            db0, cpu0 = backend_cpu_s(pid), time.process_time()
                            if profiler is not None and kind == args.profile:
                                profiler.enable()
                            status, content = call(app, "POST", path, token, body)
                            if profiler is not None:
                                profiler.disable()
                        key = kind if status != 204 else "next_none"
                        if not count_queries:
                            stats[key]["server_cpu_s"] += time.process_time() - cpu0
                            stats[key]["db_cpu_s"] += backend_cpu_s(pid) - db0
                            stats[key]["requests"] += 1
                        else:
                            stats[key]["queries"] += len(captured)
                            if args.show_sql and stats[key]["statuses"].get(status, 0) == 1:
                                print(f"--- {key} {status}", *[q["sql"] for q in captured], sep="\n")
                        stats[key]["statuses"][status] = stats[key]["statuses"].get(status, 0) + 1
                        if kind == "next":
                            if status == 204:
                                del active[name]
                                break
                            assert status == 200, (status, content[:300])
                            item = json.loads(content)["item"]
                        else:
                            assert status in (200, 201), (status, content[:300])
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(45)
            print(out.getvalue())
        for kind, s in stats.items():
            n = s["requests"]
            print(json.dumps({
                "call": kind, "requests": n, "server_cpu_ms": round(1000 * s["server_cpu_s"] / n, 2),
                "db_cpu_ms": round(1000 * s["db_cpu_s"] / n, 2), "queries": round(s["queries"] / n, 2),
                "annotators": args.annotators, "items": args.items, "statuses_both_rounds": s["statuses"],
            }))
    finally:
        from django.db import connections

        connections.close_all()
        import psycopg

        with psycopg.connect(admin_url(server), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
