"""Stopping the child processes the project starts (demo's worker and server, tests' workers, benchmarks)."""
import os
import signal
import subprocess


def stop_process_group(proc: subprocess.Popen, *, timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session=True``), wait up to
    ``timeout`` seconds, then SIGKILL it. A Celery worker finishes its current task on SIGTERM; tasks are
    acknowledged late, so a killed one is redelivered. Does nothing for a process that has exited.
    """
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        proc.wait()
