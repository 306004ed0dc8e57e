"""Training under torchrun (DDP) unchanged: two CPU ranks with the gloo backend, as on a multi-GPU host."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.modeling.test_grag_core import SAMPLES

pytestmark = pytest.mark.slow


def test_two_ranks_under_torchrun_split_the_samples_and_only_rank_0_writes(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    data = tmp_path / "train.jsonl"
    samples = [dataclasses.replace(s, key=f"{s.key}-{i}") for i in range(4) for s in SAMPLES]  # 8 samples
    data.write_text("\n".join(json.dumps(s.__dict__) for s in samples) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "modeling.grag", "train", "--train", str(data),
         "--out", str(tmp_path / "run"), "--method", "postgrag", "--backbone", "tiny:llama", "--epochs", "1",
         "--batch-size", "2", "--alpha", "0.5", "--beta", "0.1", "--checkpoint-every", "0"],
        capture_output=True, text=True, timeout=600, env=env, cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # one line for the run, not one per rank
    # Each rank takes every other sample: 4 samples a rank in batches of 2 -> 2 optimiser steps.
    assert summaries[0]["steps"] == 2
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2]  # rank 0's log only: no line twice
    assert all(entry["l_g"] > 0 and "l_cjepa" in entry for entry in log)  # PostGRAG's losses, on both ranks' data
    assert (tmp_path / "run" / "best").is_dir()
