"""The command line as a user runs it: outputs, files, and one-line errors with exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest
import yaml

from hybridize import api


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run `hybridize ARGS...` through its entry point in this process (a subprocess per call would
    spend most of its time importing torch); returns the exit code and what was printed."""
    from hybridize import cli
    monkeypatch.setattr(cli.console, "width", 200)
    monkeypatch.setattr(cli.err_console, "width", 200)

    def run(*args) -> Result:
        monkeypatch.setattr(sys, "argv", ["hybridize", *map(str, args)])
        code = 0
        try:
            cli.main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def test_entry_point_in_a_real_process(tmp_path):
    done = subprocess.run([sys.executable, "-m", "hybridize", "plan", str(tmp_path / "nope.gguf")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_plan_prints_tables_and_writes_yaml(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "plan.yaml"
    done = run_cli("plan", tiny_model_dir, "--ratio", "3:1", "--contexts", "1K,8K", "-o", out)
    assert done.returncode == 0, done.stderr
    assert "Layer map" in done.stdout and "8K" in done.stdout and "1 of 4 layers stay full attention" in done.stdout
    assert yaml.safe_load(out.read_text())["mixers"] == ["gdn", "gdn", "gdn", "full"]
    again = run_cli("plan", tiny_model_dir, "--ratio", "3:1", "-o", out)
    assert again.returncode == 2 and "--force" in again.stderr


def test_convert_writes_a_loadable_checkpoint(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "hybrid"
    done = run_cli("convert", tiny_model_dir, "--mixer", "kda", "--full-layers", "1,3", "-o", out)
    assert done.returncode == 0, done.stderr
    model, tokenizer = api.load(out)
    assert model.config.hybridize["mixers"] == ["kda", "full", "kda", "full"]
    record = json.loads((out / "hybridize.json").read_text())
    assert record["command"].startswith("hybridize convert") and "--full-layers 1,3" in record["command"]
    ids = tokenizer("w5 w6 w7", return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=3, do_sample=False).shape[1] >= ids.shape[1] + 1
    exists = run_cli("convert", tiny_model_dir, "-o", out)
    assert exists.returncode == 2 and "already exists" in exists.stderr
    forced = run_cli("convert", tiny_model_dir, "--plan", _plan_file(tmp_path), "-o", out, "--force")
    assert forced.returncode == 0, forced.stderr
    assert api.load(out)[0].config.hybridize["mixers"] == ["swa", "gdn", "gdn", "full"]


def _plan_file(tmp_path):
    path = tmp_path / "mixed.yaml"
    path.write_text("mixers: [swa, gdn, gdn, full]\nwindow: 16\n")
    return path


@pytest.mark.parametrize("args, message", [
    (["plan", "{model}", "--ratio", "three"], "bad ratio"),
    (["plan", "{model}", "--full-layers", "1,9"], "out of range"),
    (["plan", "{model}", "--mixer", "swa"], "need a window"),
    (["plan", "{model}", "--mixer", "mamba"], "unknown mixer"),
    (["plan", "{model}", "--ratio", "3:1", "--full-layers", "1"], "only one of"),
    (["convert", "no/such/dir/here", "-o", "{tmp}/x"], "not a known alias"),
    (["convert", "{tmp}/missing.gguf", "-o", "{tmp}/x"], "does not exist"),
    (["push", "{tmp}", "me/repo", "--dry-run"], "not a checkpoint directory"),
])
def test_user_mistakes_are_one_line(run_cli, tiny_model_dir, tmp_path, args, message):
    done = run_cli(*[a.format(model=tiny_model_dir, tmp=tmp_path) for a in args])
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) <= 3


def test_push_dry_run_lists_files_and_uploads_nothing(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "hybrid"
    assert run_cli("convert", tiny_model_dir, "-o", out).returncode == 0
    done = run_cli("push", out, "someone/tiny-hybrid", "--dry-run")
    assert done.returncode == 0, done.stderr
    for name in ("model.safetensors", "config.json", "modeling_hybridize.py", "README.md"):
        assert name in done.stdout
    assert "nothing uploaded" in done.stdout


def test_help_has_an_example_for_every_command():
    from typer.main import get_command
    from hybridize.cli import app
    group = get_command(app)
    assert {"plan", "convert", "push", "models", "env"} <= set(group.commands)
    for name, command in group.commands.items():
        assert "Example: hybridize" in (command.help or ""), name


def test_env_and_models(run_cli):
    done = run_cli("env")
    assert done.returncode == 0 and "transformers" in done.stdout and "torch" in done.stdout
    done = run_cli("models")
    assert done.returncode == 0 and "smollm2-135m" in done.stdout and "meta-llama/Llama-3.1-8B" in done.stdout
