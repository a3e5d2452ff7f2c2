"""The examples keep working: each runs on a tiny local model, as a user would run it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_python_api_example(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py"), str(tiny_model_dir), "-o", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "full attention layers: [3]" in done.stdout and "generated:" in done.stdout
    assert (out / "model.safetensors").is_file()


def test_cli_workflow_example(tiny_model_dir, tmp_path):
    import json
    import os
    out = tmp_path / "cli"
    # the `hybridize` script of this interpreter's environment, also when pytest runs from an
    # environment that is not activated (python -m pytest by path)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", str(EXAMPLES / "cli_workflow.sh"), str(tiny_model_dir), str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "eval.json").read_text())
    assert report  # the eval command's JSON, teacher and hybrid side by side
    assert "nothing uploaded" in done.stdout


def test_distill_example(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / "distill_tiny_cpu.py"), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "distilled" / "model.safetensors").is_file()
