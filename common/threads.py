"""How many CPU threads torch uses in a process that runs model work (a worker, a command).

On a CPU shared with other busy processes, torch's OpenMP threads spin-wait on each other and
model work (generic responses, training, generation, BERTScore, the judge) gets up to ten times
slower; one or two threads avoid that. ``LLM_CPU_THREADS`` sets the count for every torch
computation of the process (0 or unset: torch's default, one per core).
"""
import os

THREADS_ENV = "LLM_CPU_THREADS"


def cpu_threads_from_env() -> int:
    """``LLM_CPU_THREADS`` as a count (0: leave torch's default). Raises ValueError naming the bad value."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return 0
    try:
        threads = int(raw)
    except ValueError:
        raise ValueError(f"{THREADS_ENV}={raw!r} is not a whole number of threads") from None
    if threads < 0:
        raise ValueError(f"{THREADS_ENV}={raw!r} must be 0 (torch's default) or more")
    return threads


def torch_threads_apply(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default: from the environment); returns the count in force.

    Imports torch only when a count is set, so a process without model work stays light.
    """
    threads = cpu_threads_from_env() if threads is None else threads
    if threads <= 0:
        return 0
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def shared_cpu_default() -> int:
    """Threads for a demo on a machine others share: half the cores, at least one."""
    return max(1, (os.cpu_count() or 2) // 2)
