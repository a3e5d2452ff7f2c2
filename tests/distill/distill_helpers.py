"""Fixtures for distillation tests: a tiny saved Llama (the teacher), its 3:1 hybrid, a small corpus."""
from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tests.conftest import char_tokenizer  # noqa: F401  (re-exported to the distill tests)
from hybridize import api
from hybridize.plans import Plan


def tiny_teacher(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=1, bos_token_id=1)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "tiny-llama"
    tiny_teacher().save_pretrained(path)
    char_tokenizer().save_pretrained(path)
    return path


def convert_to(teacher: Path, out: Path, mixers: list[str], window: int | None = None) -> Path:
    api.convert(str(teacher), Plan(mixers, window=window), out)
    return out


@pytest.fixture(scope="session")
def hybrid_dir(teacher_dir, tmp_path_factory) -> Path:
    """3:1 Gated DeltaNet: layers 0-2 converted, layer 3 full attention."""
    return convert_to(teacher_dir, tmp_path_factory.mktemp("hybrid") / "gdn", ["gdn", "gdn", "gdn", "full"])


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """Real text: slices of 60 of Python's own source files (about 120K characters)."""
    path = tmp_path_factory.mktemp("corpus")
    stdlib = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:60]
    for i, f in enumerate(stdlib):
        (path / f"f{i:02d}.py").write_text(f.read_text(encoding="utf-8", errors="replace")[:2000])
    return path


def small_options(hybrid_dir: Path, corpus: Path, out: Path, **kw):
    from hybridize.distill import DistillOptions
    base = dict(model=str(hybrid_dir), output=str(out), data=str(corpus), seq_len=64, batch_size=2,
                eval_tokens=512, checkpoint_every=3, log_every=1, heldout_fraction=0.2,
                attention={"tokens": 12 * 128, "lr": 1e-3, "warmup": 0.25},
                kd={"tokens": 8 * 128, "lr": 1e-3, "lora_lr": 1e-3, "train": "lora", "lora_rank": 4, "warmup": 0.1})
    for key, value in kw.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return DistillOptions.from_dict(base)
