"""LLM_CPU_THREADS: one rule for how many threads torch uses in a process that runs model work."""
import pytest

from common.threads import cpu_threads_from_env, shared_cpu_default, torch_threads_apply


def test_a_bad_thread_count_names_the_variable(monkeypatch):
    monkeypatch.setenv("LLM_CPU_THREADS", "two")
    with pytest.raises(ValueError, match="LLM_CPU_THREADS='two' is not a whole number"):
        cpu_threads_from_env()
    monkeypatch.setenv("LLM_CPU_THREADS", "-1")
    with pytest.raises(ValueError, match="must be 0"):
        cpu_threads_from_env()


def test_the_count_is_applied_to_torch(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("LLM_CPU_THREADS", "1")
    try:
        assert torch_threads_apply() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.delenv("LLM_CPU_THREADS")
    assert torch_threads_apply() == 0 and torch.get_num_threads() == before


def test_the_demo_default_leaves_half_the_cores_to_others():
    import os

    assert 1 <= shared_cpu_default() <= max(1, (os.cpu_count() or 2) // 2)
