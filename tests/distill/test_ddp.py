"""Two processes (torchrun, gloo on the CPU): the same distill() code under accelerate's DDP and
FSDP2. Both ranks must end with identical weights (stage 1 averages mixer gradients by hand, stage 2
through DDP / FSDP), the run must write one checkpoint with every rank's RNG state, and FSDP2 (its
shards gathered for checkpoints and the output) must reach the DDP run's weights, also when stopped
mid-stage 2 and resumed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None and not TORCHRUN.exists(), reason="torchrun not installed")


def _torchrun(hybrid_dir, corpus, out, *flags) -> list[dict]:
    env = dict(os.environ, ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    # --standalone: a free port for each run (back-to-back runs would otherwise reuse port 29500)
    done = subprocess.run([str(TORCHRUN if TORCHRUN.exists() else "torchrun"), "--standalone", "--nproc_per_node", "2",
                           str(Path(__file__).with_name("ddp_worker.py")), str(hybrid_dir), str(corpus), str(out),
                           *flags], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
            if line.startswith(("RESULT ", "STOPPED "))]


@pytest.fixture(scope="module")
def ddp_run(hybrid_dir, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "ddp"
    return out, _torchrun(hybrid_dir, corpus, out)


def test_two_process_run_keeps_ranks_identical(ddp_run):
    out, results = ddp_run
    assert len(results) == 2 and {r["world"] for r in results} == {2}
    assert results[0]["checksum"] == results[1]["checksum"]
    # The teacher (LoRA off) is the same model before and after each stage, on every rank.
    for r in results:
        assert r["teacher_ppl"][0] == pytest.approx(r["teacher_ppl"][1], rel=1e-6)
        assert r["teacher_ppl"][0] == pytest.approx(r["teacher_ppl"][2], rel=1e-6)
    assert (out / "config.json").is_file()
    step = out.parent / "ddp.run" / "checkpoints" / "kd-0000003"
    assert (step / "rng-0.pt").is_file() and (step / "rng-1.pt").is_file()


def test_fsdp2_stopped_and_resumed_matches_ddp(ddp_run, hybrid_dir, corpus, tmp_path):
    _, ddp = ddp_run
    out = tmp_path / "fsdp"
    stopped = _torchrun(hybrid_dir, corpus, out, "--fsdp", "--stop-at-kd", "2")
    assert len(stopped) == 2 and all("kd stopped by SIGTERM after step 2" in s["message"] for s in stopped)
    assert (tmp_path / "fsdp.run" / "checkpoints" / "kd-0000002" / "optimizer.pt").is_file()
    results = _torchrun(hybrid_dir, corpus, out, "--fsdp", "--resume")
    main = next(r for r in results if r["rank"] == 0)
    assert next(r for r in results if r["rank"] == 1)["checksum"] is None  # only the main process saves
    assert main["checksum"] == pytest.approx(ddp[0]["checksum"], rel=1e-6)
    assert main["kl"] == pytest.approx(ddp[0]["kl"], rel=1e-4)
    assert main["teacher_ppl"] == pytest.approx(ddp[0]["teacher_ppl"], rel=1e-6)
    assert (out / "config.json").is_file()


def test_fsdp2_bf16_every_process_evaluates_the_real_weights(ddp_run, hybrid_dir, corpus, tmp_path):
    """bf16 autocast with bfloat16 frozen weights, as on GPUs, and the environment `accelerate launch
    --use_fsdp` sets: with it transformers (5.17) loads zeros on every process but the first, which
    then evaluated, and trained stage 1 on, an empty model (found on two H200s)."""
    _, ddp = ddp_run
    results = _torchrun(hybrid_dir, corpus, tmp_path / "bf16", "--fsdp", "--bf16")
    for r in results:
        assert r["teacher_ppl"][0] == pytest.approx(ddp[0]["teacher_ppl"][0], rel=1e-4)
        assert r["teacher_ppl"][2] == pytest.approx(r["teacher_ppl"][0], rel=1e-4)
    assert results[0]["kl"] == pytest.approx(ddp[0]["kl"], rel=0.05)
