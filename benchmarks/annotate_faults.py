"""50 annotators over HTTP while a gunicorn worker is killed and PostgreSQL restarts (issue 10).

    .venv/bin/python benchmarks/annotate_faults.py [--annotators 50] [--items 300] [--overlap 3] [--workers 4]
        [--think-ms 300] [--kill-worker-at 8] [--restart-db-at 20]

Runs on a PRIVATE PostgreSQL cluster it creates itself (initdb into a temporary folder, pg_ctl
start on a free port, trust auth, run as the ``postgres`` user when started as root) so that it
can restart the database without touching any shared server; the cluster is stopped and deleted
at the end. gunicorn (production settings, ``--workers`` sync workers, CONN_MAX_AGE 60 so that
the restart breaks live connections) serves the app.

Each annotator is a thread with its own API token looping ``POST next`` / ``POST ratings`` until
it gets 204. A connection error or a 5xx counts in ``errors_seen`` and the request is retried
(``retries``) with a capped backoff: both API calls are safe to repeat (``next`` returns the live
reservation; a repeated submit of the same answers stores nothing and answers 200). Mid-run one
gunicorn worker gets SIGKILL and the database gets ``pg_ctl restart -m fast``.

Afterwards the database is checked: every (item, rater, question) a client got a 2xx for is
stored and current (``lost``), no (item, rater, question) has two rows (``duplicates``: clients
never change answers), no item has more completed assignments than its overlap
(``over_overlap``). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
QKEYS = ["q1", "q2", "q3", "q4"]
PASSWORD = "faults-pass-123"
SLUG = "faults"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port; never the shared server."""

    def __init__(self):
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            sys.exit("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
        self.bin = found[-1].parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="grag-faults-pg-"))
        self.data = self.dir / "data"
        self.as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str, check: bool = True) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # Output to a file, never a pipe: the server pg_ctl starts inherits it and would hold a
        # pipe open forever.
        with open(self.dir / "pg_ctl.out", "a") as out:
            result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120)
        if check and result.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{(self.dir / 'pg_ctl.out').read_text()[-2000:]}")

    def start(self) -> str:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-instructions", "-E", "UTF8")
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
                "-c max_connections=200 -c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "server.log"), "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "grag_faults")
        return f"postgres://postgres@127.0.0.1:{self.port}/grag_faults"

    def restart(self) -> float:
        t0 = time.perf_counter()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-m", "fast", "-w", "restart")
        return time.perf_counter() - t0

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def setup(args, env: dict) -> None:
    """Migrate, then create the study and annotators in this process (before gunicorn starts)."""
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    from annotation.models import Item
    from annotation.services import study_create

    study = study_create(slug=SLUG, baseline_name="sys-base", challenger_name="sys-chal", overlap=args.overlap, seed=0)
    Item.objects.bulk_create(
        [
            Item(study=study, key=f"item-{i}", persona="I have two dogs.\nI live near the sea.",
                 history=[{"role": "user", "text": f"Tell me about your weekend ({i})."}], generic_response="It was fine.",
                 baseline_response=f"It was fine, thanks ({i}).", challenger_response=f"I walked my dogs on the beach ({i}).")
            for i in range(args.items)
        ]
    )
    password = make_password(PASSWORD)  # hashed once: the setup is not what is measured
    users = User.objects.bulk_create([User(username=f"ann{i:03d}", password=password) for i in range(args.annotators)])
    study.annotators.add(*users)
    # Tokens made here: logging 50 clients in through the password hasher is not the point.
    Token.objects.bulk_create([Token(user=u, key=Token.generate_key()) for u in users])


class Annotator(threading.Thread):
    def __init__(self, user: str, token: str, base: str, args, barrier: threading.Barrier, stop: threading.Event):
        super().__init__(daemon=True)
        self.user, self.token, self.base, self.args, self.barrier, self.stop = user, token, base, args, barrier, stop
        self.latencies: list[float] = []
        self.acked: set[tuple[str, str]] = set()  # (item, question) the server confirmed with a 2xx
        self.errors_seen = self.retries = self.submits = 0
        self.error: str | None = None
        self.rng = random.Random(user)

    def request(self, client, method: str, url: str, **kw):
        """Send; on a connection error or a 5xx, count it, back off and send again."""
        for attempt in range(200):
            t0 = time.perf_counter()
            try:
                response = client.request(method, url, **kw)
            except Exception:
                response = None
            if response is not None and response.status_code < 500:
                self.latencies.append((time.perf_counter() - t0) * 1000)
                return response
            self.errors_seen += 1
            self.retries += 1
            time.sleep(min(0.05 * 2 ** min(attempt, 5), 1.0) * self.rng.uniform(0.5, 1.5))
        raise RuntimeError(f"{self.user}: {method} {url} failed 200 times")

    def think(self) -> None:
        if self.args.think_ms > 0:
            time.sleep(self.rng.uniform(0.5, 1.5) * self.args.think_ms / 1000)

    def run(self) -> None:
        import httpx

        try:
            with httpx.Client(base_url=self.base, timeout=30, headers={"Authorization": f"Token {self.token}"}) as client:
                self.barrier.wait()
                while not self.stop.is_set():
                    self.think()
                    r = self.request(client, "POST", f"/api/studies/{SLUG}/next/")
                    if r.status_code == 204:
                        return
                    if r.status_code != 200:
                        raise RuntimeError(f"{self.user}: next answered {r.status_code}: {r.text[:200]}")
                    item = r.json()["item"]
                    body = {"answers": [{"question": q, "choice": self.rng.choice("ABS"), "confidence": self.rng.randint(1, 5)}
                                        for q in QKEYS]}
                    self.think()
                    r = self.request(client, "POST", f"/api/studies/{SLUG}/items/{item}/ratings/", json=body)
                    if r.status_code not in (200, 201):
                        raise RuntimeError(f"{self.user}: submit answered {r.status_code}: {r.text[:200]}")
                    self.submits += 1
                    self.acked.update((item, q) for q in QKEYS)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotators", type=int, default=50)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--overlap", type=int, default=3)
    p.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    p.add_argument("--think-ms", type=float, default=300, help="mean pause before each request")
    p.add_argument("--kill-worker-at", type=float, default=8, help="seconds in: SIGKILL one gunicorn worker (0: never)")
    p.add_argument("--restart-db-at", type=float, default=20, help="seconds in: pg_ctl restart -m fast (0: never)")
    p.add_argument("--timeout", type=float, default=600, help="give up after this many seconds of load")
    args = p.parse_args()
    # A TERM (timeout, Ctrl-C from a supervisor) still stops gunicorn and deletes the cluster.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))

    pg = PrivatePostgres()
    gunicorn = None
    try:
        url = pg.start()
        env = {
            **os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "grag_site.settings.production",
            "SECRET_KEY": "benchmark-only-secret-key-" + "x" * 30, "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false", "CONN_MAX_AGE": "60", "LOG_LEVEL": "ERROR",
        }
        env.pop("TEST_DATABASE_NAME", None)
        setup(args, env)
        from rest_framework.authtoken.models import Token

        tokens = dict(Token.objects.values_list("user__username", "key"))
        from django.db import connections

        connections.close_all()  # our own connection must not hold anything during the run
        port = free_port()
        # The server errors the faults cause (tracebacks) go to a file; their number is reported.
        gunicorn_log = open(pg.dir / "gunicorn.log", "w")
        gunicorn = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "grag_site.wsgi:application", "--workers", str(args.workers),
             "--bind", f"127.0.0.1:{port}", "--log-level", "critical", "--graceful-timeout", "5", "--preload",
             "--timeout", "120"],
            cwd=ROOT, env=env, start_new_session=True, stdout=gunicorn_log, stderr=subprocess.STDOUT,
        )
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

        barrier, stop = threading.Barrier(args.annotators + 1), threading.Event()
        clients = [Annotator(u, tokens[u], base, args, barrier, stop) for u in sorted(tokens)]
        for c in clients:
            c.start()
        barrier.wait()
        t0 = time.perf_counter()
        killed, restart_s, acked_before_restart = None, None, None
        while any(c.is_alive() for c in clients):
            now = time.perf_counter() - t0
            if args.kill_worker_at and killed is None and now >= args.kill_worker_at:
                workers = subprocess.run(["pgrep", "-P", str(gunicorn.pid)], capture_output=True, text=True).stdout.split()
                if workers:
                    killed = int(workers[0])
                    os.kill(killed, signal.SIGKILL)
            if args.restart_db_at and restart_s is None and now >= args.restart_db_at:
                acked_before_restart = sum(c.submits for c in clients)
                restart_s = pg.restart()
            if now > args.timeout:
                stop.set()
                break
            time.sleep(0.05)
        for c in clients:
            c.join(timeout=60)
        wall = time.perf_counter() - t0
        os.killpg(gunicorn.pid, signal.SIGTERM)
        gunicorn.wait(timeout=30)
        gunicorn = None

        from django.db.models import Count, Q

        from annotation.models import Item, Rating

        rows = Rating.objects.filter(item__study__slug=SLUG)
        stored = set(rows.filter(is_current=True).values_list("item__public_id", "rater", "question"))
        acked = {(item, c.user, q) for c in clients for item, q in c.acked}
        duplicates = rows.count() - len(set(rows.values_list("item_id", "rater", "question")))
        completed = Item.objects.filter(study__slug=SLUG).annotate(
            n=Count("assignments", filter=Q(assignments__status="completed"))
        )
        latencies = sorted(x for c in clients for x in c.latencies)
        ratings = len(stored) // len(QKEYS)
        result = {
            "annotators": args.annotators,
            "ratings": ratings,
            "errors_seen": sum(c.errors_seen for c in clients),
            "retries": sum(c.retries for c in clients),
            "lost": len(acked - stored),
            "duplicates": duplicates,
            "over_overlap": completed.filter(n__gt=args.overlap).count(),
            "throughput_per_s": round(ratings / wall, 2),
            "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1) if latencies else None,
            # Context: what was done to the system, and whether the study finished.
            "items": args.items, "overlap": args.overlap, "workers": args.workers, "think_ms": args.think_ms,
            "killed_worker_pid": killed, "killed_at_s": args.kill_worker_at if killed else None,
            "db_restart_at_s": args.restart_db_at if restart_s is not None else None,
            "db_restart_s": round(restart_s, 2) if restart_s is not None else None,
            "submits_before_db_restart": acked_before_restart,
            "incomplete_items": completed.filter(n__lt=args.overlap).count(),
            "server_errors_logged": (pg.dir / "gunicorn.log").read_text(errors="replace").count("Internal Server Error"),
            "client_errors": [c.error for c in clients if c.error][:3],
            "requests": len(latencies), "wall_s": round(wall, 1),
        }
        connections.close_all()
        print(json.dumps(result))
    finally:
        if gunicorn is not None and gunicorn.poll() is None:
            os.killpg(gunicorn.pid, signal.SIGKILL)
        pg.stop()


if __name__ == "__main__":
    main()
