"""examples/eval_teacher_vs_hybrid.py keeps working on a tiny converted checkpoint."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from hybridize import api
from tests.conftest import VOCAB

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "eval_teacher_vs_hybrid.py"


def test_eval_example(tiny_model_dir, tmp_path):
    api.convert(str(tiny_model_dir), api.plan(str(tiny_model_dir), ratio="1:1"), tmp_path / "hybrid")
    words = torch.randint(3, VOCAB, (600,), generator=torch.Generator().manual_seed(0))
    (tmp_path / "text.txt").write_text(" ".join(f"w{int(w)}" for w in words))
    done = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path / "hybrid"), "--text", str(tmp_path / "text.txt"),
                           "--seq-len", "64", "--max-tokens", "512"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| teacher |" in done.stdout and "| hybrid |" in done.stdout
    assert "| 512 | 1 |" in done.stdout  # the bench table
