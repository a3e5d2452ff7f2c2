"""Two processes (torchrun, gloo on the CPU): the same distill() code under accelerate's DDP. Both
ranks must end with identical weights (stage 1 averages mixer gradients by hand, stage 2 through DDP)
and the run must write one checkpoint with every rank's RNG state."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_two_process_run_keeps_ranks_identical(hybrid_dir, corpus, tmp_path):
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    done = subprocess.run([str(torchrun if torchrun.exists() else "torchrun"), "--nproc_per_node", "2",
                           str(Path(__file__).with_name("ddp_worker.py")), str(hybrid_dir), str(corpus), str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    results = [json.loads(line[len("RESULT "):]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and len(results) == 2, done.stderr[-3000:]
    assert {r["world"] for r in results} == {2}
    assert results[0]["checksum"] == results[1]["checksum"]
    assert (out / "config.json").is_file()
    step = out.parent / "ddp.run" / "checkpoints" / "kd-0000003"
    assert (step / "rng-0.pt").is_file() and (step / "rng-1.pt").is_file()
