"""Hybrid checkpoints: round trips, loading without hybridize, atomic writes, model cards."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from hybridize import api
from hybridize.export import ExportError, atomic_directory, save_hybrid
from hybridize.plans import Plan
from hybridize.surgery import convert, shapes_of
from tests.conftest import VOCAB, tiny_model, tiny_tokenizer

PLAN = Plan(["swa", "kda", "gdn", "full"], window=6)


def saved_hybrid(tmp_path, arch="llama-gqa", name="hyb", **overrides):
    model = tiny_model(arch, **overrides)
    shapes = shapes_of(model)
    hybrid = convert(model, PLAN, source="tiny")
    out = save_hybrid(hybrid, tiny_tokenizer(), tmp_path / name, PLAN, shapes, record={"source": "tiny"})
    return hybrid, out


def stored_keys(path):
    keys = set()
    for f in path.glob("*.safetensors"):
        with safe_open(f, "pt") as st:
            keys |= set(st.keys())
    return keys


def test_round_trip_identical_logits_and_keys(tmp_path, arch):
    hybrid, out = saved_hybrid(tmp_path, arch)
    x = torch.randint(3, VOCAB, (2, 17))
    loaded, tokenizer = api.load(out)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, hybrid(x).logits, rtol=0, atol=0)
    assert set(loaded.state_dict()) == set(hybrid.state_dict())
    # Keys on disk are the original architecture's, plus the new mixers' (and no wrapper prefix).
    keys = stored_keys(out)
    assert "model.layers.3.self_attn.q_proj.weight" in keys and "model.layers.2.self_attn.A_log" in keys
    assert not any(k.startswith(("_inner", "base_model.model")) for k in keys)
    resaved = save_hybrid(loaded, tokenizer, tmp_path / "again", PLAN, shapes_of(tiny_model(arch)))
    assert stored_keys(resaved) == keys  # save -> load -> save does not rename anything


def test_tied_embeddings_stay_tied(tmp_path):
    hybrid, out = saved_hybrid(tmp_path, tie_word_embeddings=True)
    loaded, _ = api.load(out)
    assert loaded.lm_head.weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
    assert "lm_head.weight" not in stored_keys(out)


def test_loads_with_trust_remote_code_where_hybridize_is_missing(tmp_path):
    hybrid, out = saved_hybrid(tmp_path)
    x = torch.randint(3, VOCAB, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = hybrid(x).logits
        greedy = hybrid.generate(x, max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    code = f"""
import sys, json, torch
sys.modules["hybridize"] = None  # any `import hybridize` now raises ImportError
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
x = torch.tensor({x.tolist()})
with torch.no_grad():
    logits = model(x).logits
    out = model.generate(x, max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
torch.save(logits, {str(tmp_path / 'logits.pt')!r})
print(json.dumps({{"module": type(model).__module__, "generated": out.tolist()}}))
"""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["module"].startswith("transformers_modules.")  # the checkpoint's own copy of the code
    assert result["generated"] == greedy.tolist()
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=0)


def test_checkpoint_contents_and_model_card(tmp_path):
    _, out = saved_hybrid(tmp_path)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "plan.yaml", "hybridize.json", "README.md", "modeling_hybridize.py",
            "configuration_hybridize.py", "mixers.py", "cache.py", "gated_delta.py", "tokenizer.json"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_hybridize.HybridizeForCausalLM"
    assert config["model_type"] == "hybridize" and config["base_model_type"] == "llama"
    assert config["hybridize"]["mixers"] == PLAN.mixers
    assert config["layer_types"] == ["sliding_attention", "linear_attention", "linear_attention", "full_attention"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-generation\n")
    assert "| 1 | kda |" in card and "| 0 | swa (window 6) |" in card and "## Cache per sequence" in card
    assert api.hybrid_plan(out).mixers == PLAN.mixers


def test_atomic_directory_keeps_the_old_output_on_failure(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(ExportError, match="--force"):
        with atomic_directory(out):
            pass
    with pytest.raises(RuntimeError):
        with atomic_directory(out, force=True) as tmp:
            (tmp / "half.bin").write_text("x")
            raise RuntimeError("crash while writing")
    assert (out / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left behind
    with atomic_directory(out, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_auto_model_loads_hybrids_once_hybridize_is_imported(tmp_path):
    hybrid, out = saved_hybrid(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(out)  # no trust_remote_code: the registered classes
    assert type(model).__module__ == "hybridize.modeling.modeling_hybridize"
