"""gunicorn on a free loopback port, for the tests and benchmarks that need a real web server.

One home for what ``tests/hardening/test_sqlite_concurrency.py`` and ``benchmarks/annotate_load.py``
both do: start ``grag_site.wsgi`` under gunicorn in its own process group with the environment they
give (settings, DATABASE_URL), wait until ``/healthz`` answers, report its workers' CPU time, stop
it. No Django here: the server runs in its own processes.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .processes import stop_process_group

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used (Linux ``/proc/<pid>/stat``, 10 ms ticks);
    0.0 when it has exited or cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Gunicorn:
    """``gunicorn grag_site.wsgi:application`` on 127.0.0.1:<free port>; a context manager.

    ``workers`` processes; ``threads`` > 1 selects the gthread worker class (HTTP keep-alive, one
    process serving several requests), else sync workers (one request at a time, the connection
    closed after each). ``--preload`` imports the app once in the master and forks: a busy
    2-core machine takes longer than gunicorn's default 30 s to import it in every worker, which
    then get killed in a loop; ``--timeout 120`` for the same reason. Output goes to ``log``
    (a file, never a pipe that could fill up). ``start`` raises RuntimeError, with the end of the
    log, when ``/healthz`` does not answer within ``start_timeout`` seconds.
    """

    def __init__(self, *, env: dict[str, str], log: Path, workers: int = 2, threads: int = 1,
                 extra_args: tuple[str, ...] = (), start_timeout: float = 300.0):
        self.env, self.log, self.workers, self.threads = env, Path(log), workers, threads
        self.extra_args, self.start_timeout = extra_args, start_timeout
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        """Start the server and wait for ``/healthz``; return the base URL (``http://127.0.0.1:<port>``)."""
        exe = Path(sys.executable).parent / "gunicorn"
        worker_class = ["--worker-class", "gthread", "--threads", str(self.threads)] if self.threads > 1 else []
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [str(exe) if exe.exists() else "gunicorn", "grag_site.wsgi:application", "--workers", str(self.workers),
                 *worker_class, "--bind", f"127.0.0.1:{self.port}", "--preload", "--timeout", "120",
                 "--graceful-timeout", "5", "--log-level", "warning", *self.extra_args],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return self.base_url
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"gunicorn did not answer /healthz within {self.start_timeout:.0f} s:\n"
                                   f"{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        """The process ids of the live workers (the master's children)."""
        if self.proc is None:
            return []
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return []
        return [int(pid) for pid in children]

    def workers_cpu_s(self) -> dict[int, float]:
        """CPU seconds each live worker has used, by process id."""
        return {pid: process_cpu_s(pid) for pid in self.worker_pids()}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after 30 s (``common.processes.stop_process_group``)."""
        if self.proc is not None:
            stop_process_group(self.proc, timeout=30)

    def __enter__(self) -> Gunicorn:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
