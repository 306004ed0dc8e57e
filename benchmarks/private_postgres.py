"""A throwaway PostgreSQL cluster for benchmarks that restart their database (annotate_load.py --restart-db-at)."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common.web_server import free_port  # noqa: E402


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, so that it may be restarted; never the shared server."""

    def __init__(self):
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
        if not found:
            sys.exit("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
        self.bin = found[-1].parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="grag-annotate-pg-"))
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

    def start(self, name: str) -> str:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-instructions", "-E", "UTF8")
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} "
                "-c max_connections=200 -c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "server.log"), "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def restart(self) -> float:
        t0 = time.perf_counter()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"), "-m", "fast", "-w", "restart")
        return time.perf_counter() - t0

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
