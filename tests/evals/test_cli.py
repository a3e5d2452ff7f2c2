"""`hybridize eval` and `hybridize bench` end to end on a tiny converted checkpoint."""
from __future__ import annotations

import json
import sys

import pytest
import torch
from typer.testing import CliRunner

from hybridize import api
from hybridize.cli import app, main
from hybridize.data import iter_documents, token_windows
from hybridize.evals.perplexity import perplexity
from tests.conftest import VOCAB


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tests.conftest import tiny_model, tiny_tokenizer
    root = tmp_path_factory.mktemp("cli")
    model = tiny_model("llama-gqa")
    model.config.pad_token_id, model.config.eos_token_id = 0, 1
    model.save_pretrained(root / "base")
    tiny_tokenizer().save_pretrained(root / "base")
    plan = api.plan(str(root / "base"), ratio="1:1")
    api.convert(str(root / "base"), plan, root / "hybrid")
    rng = torch.Generator().manual_seed(0)
    text = " ".join(f"w{int(t)}" for t in torch.randint(3, VOCAB, (400,), generator=rng))
    (root / "text.txt").write_text(text)
    return root


def test_eval_json_matches_an_independent_perplexity(checkpoint, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["eval", str(checkpoint / "hybrid"), "--text", str(checkpoint / "text.txt"),
                                      "--seq-len", "32", "--max-tokens", "256", "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    teacher, hybrid = report["perplexity"]
    assert (teacher["model"], hybrid["model"]) == ("teacher", "hybrid")
    assert report["split"] == "all"  # one file: no held-out document, so it is scored whole
    assert teacher["tokens"] == 8 * 31
    model, tok = api.load(checkpoint / "hybrid")
    windows = token_windows(tok, iter_documents(checkpoint / "text.txt", "all"), 32, 256)
    assert hybrid["perplexity"] == pytest.approx(perplexity(model, windows), rel=1e-5)
    assert 0 <= hybrid["agreement"] <= 1 and hybrid["kl"] > 0
    assert json.loads((out / "report.json").read_text())["perplexity"] == report["perplexity"]
    assert "| hybrid |" in (out / "report.md").read_text()
    # the output exists now: a second run refuses to overwrite it
    again = CliRunner().invoke(app, ["eval", str(checkpoint / "hybrid"), "--text", str(checkpoint / "text.txt"),
                                     "-o", str(out)])
    assert again.exit_code != 0 and "--force" in str(again.exception)


def test_bench_writes_table_and_plot(checkpoint, tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", str(checkpoint / "hybrid"), "--contexts", "16,48", "--batch", "2",
                                      "--steps", "1", "--max-prefill", "32", "--device", "cpu", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "bench.json").read_text())
    assert {(r["model"], r["context"]) for r in rows} == {(m, c) for m in ("teacher", "hybrid") for c in (16, 48)}
    assert all(r["cache_bytes"] == r["cache_predicted"] for r in rows)
    assert (out / "bench.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 48 | 2 |" in (out / "bench.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["eval", "{missing}"], "no config.json"),
    (["eval", "{ckpt}", "--text", "{missing}/x.txt"], "does not exist"),
    (["eval", "{ckpt}", "--contexts", "1K,abc"], "--contexts"),
    (["bench", "{ckpt}", "--batch", "0"], "positive"),
])
def test_user_mistakes_are_one_line(checkpoint, tmp_path, monkeypatch, capsys, args, message):
    fill = {"ckpt": str(checkpoint / "hybrid"), "missing": str(tmp_path / "nope")}
    monkeypatch.setattr(sys, "argv", ["hybridize", *[a.format(**fill) for a in args]])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
