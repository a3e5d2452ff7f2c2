"""Packing (against hybridize.data.packed_windows, an independent implementation), data positions,
options parsing and the command line."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from hybridize.data import Document, packed_windows
from hybridize.distill.data import Rows, cached_training_rows, micro_batch, pack, training_rows
from hybridize.distill.options import DistillOptions, OptionsError
from hybridize.errors import UserError

from .distill_helpers import char_tokenizer


def _docs(n=120, seed=0):
    r = random.Random(seed)
    return [Document(f"d{i}", "".join(r.choice("abc def\n") for _ in range(r.randint(1, 250)))) for i in range(n)]


def test_pack_matches_packed_windows():
    tok = char_tokenizer()
    want = packed_windows(tok, _docs(), 64, max_tokens=64 * 80)
    got = pack(tok, _docs(), seq_len=64, rows=80, batch_docs=7)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    pos = got[1]
    assert (pos[:, 0] == 0).all()  # every row starts a (possibly partial) document at position 0
    assert ((pos[:, 1:] == pos[:, :-1] + 1) | (pos[:, 1:] == 0)).all()


def test_small_corpus_is_repeated_with_a_warning(corpus):
    tok = char_tokenizer()
    with pytest.warns(UserWarning, match="repeated"):
        rows = training_rows(tok, str(corpus), rows=2000, seq_len=64, heldout_fraction=0.2)
    assert len(rows) == 2000


def test_cached_rows_are_written_once_and_read_back_identical(corpus, tmp_path):
    tok = char_tokenizer()
    args = dict(rows=40, seq_len=64, heldout_fraction=0.2)
    assert cached_training_rows(tmp_path, tok, str(corpus), build=False, **args) is None
    first = cached_training_rows(tmp_path, tok, str(corpus), **args)
    want = training_rows(tok, str(corpus), **args)
    assert torch.equal(first.input_ids, want.input_ids) and torch.equal(first.position_ids, want.position_ids)
    (cached,) = tmp_path.glob("rows-*.safetensors")
    again = cached_training_rows(tmp_path, tok, str(corpus), build=False, **args)
    assert torch.equal(again.input_ids, want.input_ids) and torch.equal(again.position_ids, want.position_ids)
    # Any other argument is another key: never the wrong rows.
    assert cached_training_rows(tmp_path, tok, str(corpus), build=False, rows=40, seq_len=32,
                                heldout_fraction=0.2) is None
    assert list(tmp_path.glob("*.tmp")) == []


def test_micro_batches_cover_each_row_once_across_processes():
    rows = Rows(torch.arange(48)[:, None].expand(-1, 4), torch.zeros(48, 4, dtype=torch.long))
    seen = []
    for step in range(3):
        for micro in range(2):
            for rank in range(4):
                b = micro_batch(rows, step=step, micro=micro, rank=rank, world=4, batch_size=2, grad_accum=2)
                seen += b.input_ids[:, 0].tolist()
    assert sorted(seen) == list(range(48))


def test_options_from_yaml_with_overrides(tmp_path):
    cfg = tmp_path / "d.yaml"
    cfg.write_text("model: out/h\noutput: out/d\nstages: [kd]\nkd:\n  tokens: 20M\n  lr: 1e-4\nattention:\n  tokens: 500K\n")
    o = DistillOptions.from_yaml(cfg, kd={"lr": 3e-4, "tokens": None}, seq_len=512).validate()
    assert o.kd.tokens == 20_000_000 and o.kd.lr == 3e-4 and o.attention.tokens == 500_000
    assert o.seq_len == 512 and o.stages == ["kd"]
    assert DistillOptions.from_dict(o.to_dict()) == o  # YAML round trip of everything
    cfg.write_text("model: x\noutput: y\nkd: {tokns: 5M}\n")
    with pytest.raises(OptionsError, match="tokns"):
        DistillOptions.from_yaml(cfg)
    with pytest.raises(OptionsError, match="token count"):
        DistillOptions(model="x", output="y", kd={"tokens": "lots"})
    with pytest.raises(OptionsError, match="stage"):
        DistillOptions(model="x", output="y", stages="attention,finetune").validate()
    assert issubclass(OptionsError, UserError)


def test_cli_distill_runs_one_stage_and_refuses_to_overwrite(hybrid_dir, corpus, tmp_path):
    from hybridize.cli import app
    out = tmp_path / "cli-out"
    args = ["distill", str(hybrid_dir), "-o", str(out), "--data", str(corpus), "--stage", "kd", "--tokens", "256",
            "--seq-len", "64", "--batch-size", "2", "--eval-tokens", "128", "--heldout-fraction", "0.2",
            "--train", "converted"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file() and "after distillation" in result.output
    again = CliRunner().invoke(app, args)
    assert isinstance(again.exception, UserError) and "--force" in str(again.exception)


def test_cli_sigterm_saves_a_checkpoint_and_resume_finishes(hybrid_dir, corpus, tmp_path):
    """A real process, as a scheduler or `timeout` stops it: exit 143 with the resume hint (no
    traceback), a checkpoint at the step it stopped on, and `--resume` ending the run."""
    out = tmp_path / "term-out"
    args = [sys.executable, "-m", "hybridize", "distill", str(hybrid_dir), "-o", str(out), "--data", str(corpus),
            "--stage", "kd", "--tokens", str(400 * 128), "--seq-len", "64", "--batch-size", "2", "--eval-tokens",
            "128", "--heldout-fraction", "0.2", "--train", "converted", "--checkpoint-every", "100000"]
    metrics = tmp_path / "term-out.run" / "metrics.jsonl"
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and '"stage": "kd", "step"' in metrics.read_text():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err[-2000:]
    assert "--resume" in err and "Traceback" not in err
    (step_dir,) = (tmp_path / "term-out.run" / "checkpoints").glob("kd-*")
    stopped_at = int(step_dir.name.split("-")[1])
    assert 0 < stopped_at < 400 and not out.exists()
    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if '"loss"' in line]
    assert steps == list(range(10, 401, 10))  # logged every 10th step, once: none lost, none repeated
    assert (out / "config.json").is_file()


def test_fsdp1_is_refused_with_the_fix():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from hybridize.distill.run import _refuse_fsdp1
    fsdp1 = SimpleNamespace(distributed_type=DistributedType.FSDP, state=SimpleNamespace(is_fsdp2=False))
    with pytest.raises(OptionsError, match="fsdp_version 2"):
        _refuse_fsdp1(fsdp1)
    _refuse_fsdp1(SimpleNamespace(distributed_type=DistributedType.FSDP, state=SimpleNamespace(is_fsdp2=True)))
    _refuse_fsdp1(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU, state=SimpleNamespace()))


def test_evaluation_batches_are_as_many_on_every_process():
    """Under FSDP each forward is a collective: a process that stopped early would hang the others."""
    from hybridize.distill.evaluate import _batches
    rows = Rows(torch.arange(17)[:, None].expand(-1, 4), torch.zeros(17, 4, dtype=torch.long))
    for world, batch in ((1, 4), (2, 8), (3, 2), (4, 4)):
        per_rank = [list(_batches(rows, batch, r, world)) for r in range(world)]
        assert len({len(b) for b in per_rank}) == 1
        counted = sorted(x for b in per_rank for rows_, real in b if real for x in rows_.input_ids[:, 0].tolist())
        assert counted == list(range(17))  # each row counted once; placeholders are not
