"""How long-running ML code reports progress and learns it should stop, without importing Django.

Loops call ``progress(done, total)`` every so often. The callback the worker passes in writes
the numbers to the Job row and raises ``Cancelled`` when an admin asked the job to stop, so the
loop ends at a clean point (after a checkpoint or a cached batch).
"""
from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]


class Cancelled(Exception):
    """Raised inside a loop when its job was cancelled; the work done so far is kept."""


def no_progress(done: int, total: int) -> None:
    """Default callback: report nothing, never cancel."""
