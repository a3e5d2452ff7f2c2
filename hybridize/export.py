"""Writing hybrid checkpoints (atomically, with their model card) and pushing them to the Hub."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from .errors import UserError
from .modeling import CHECKPOINT_FILES
from .plans import Plan, Shapes, cache_bytes, human_bytes, human_tokens

RECORD_FILE = "hybridize.json"
PLAN_FILE = "plan.yaml"
CARD_CONTEXTS = (8192, 131072, 1 << 20)
# Hub ids of the models behind aliases that load from elsewhere (for the card's base_model).
ALIAS_HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}


class ExportError(UserError):
    """An output that cannot be written as asked; the message says how to fix it."""


def check_output(output: str | Path, force: bool) -> Path:
    out = Path(output)
    if out.exists() and not force:
        raise ExportError(f"{out} already exists: pass --force to replace it, or choose another -o")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory: choose another -o")
    return out


@contextmanager
def atomic_directory(output: str | Path, force: bool = False):
    """Yield a temporary sibling directory; on success it replaces `output` in one rename.

    A crash leaves `output` as it was (plus a hidden temporary directory, removed on error)."""
    out = check_output(output, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def base_model_id(source: str | None, config) -> str | None:
    if source is None:
        return None
    if source.lower() in ALIAS_HUB_IDS:
        return ALIAS_HUB_IDS[source.lower()]
    from .sources import ALIASES
    target = ALIASES.get(source.lower(), source)
    if target.count("/") == 1 and not Path(target).exists() and not target.endswith(".gguf"):
        return target
    return None


def model_card(config, shapes: Shapes, plan: Plan, evaluation: dict | None = None) -> str:
    """README.md for the Hub: metadata header, layer map, cache savings, evaluation figures."""
    hyb = config.hybridize
    base = base_model_id(hyb.get("source"), config)
    kinds = sorted({m for m in plan.mixers if m != "full"})
    tags = ["hybridize", "hybrid-attention", "linear-attention"] + [
        {"gdn": "gated-deltanet", "kda": "kimi-delta-attention", "swa": "sliding-window-attention"}[k] for k in kinds]
    header = ["---", "library_name: transformers", "pipeline_tag: text-generation"]
    if base:
        header += [f"base_model: {base}", "base_model_relation: finetune"]
    header += ["tags:"] + [f"- {t}" for t in tags] + ["---", ""]
    full = plan.full_layers
    lines = [
        f"# Hybrid of {base or hyb.get('source') or config.base_model_type}",
        "",
        f"Converted with [hybridize](https://pypi.org/project/hybridize/) {hyb.get('version', __version__)}: "
        f"{len(plan.replaced_layers)} of {plan.num_layers} attention layers replaced "
        f"({', '.join(kinds)}), {len(full)} kept as full attention.",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO", trust_remote_code=True)',
        'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")',
        "```",
        "",
        "## Layer map",
        "",
        "| layer | mixer |",
        "|---|---|",
    ]
    lines += [f"| {i} | {m}{f' (window {plan.window})' if m == 'swa' else ''} |" for i, m in enumerate(plan.mixers)]
    lines += ["", "## Cache per sequence", "", f"{8 * shapes.dtype_bytes}-bit keys and values, float32 linear-layer state.", "",
              "| context | original | hybrid | ratio |", "|---|---|---|---|"]
    for ctx in CARD_CONTEXTS:
        teacher, hybrid = cache_bytes(shapes, None, ctx), cache_bytes(shapes, plan, ctx)
        lines.append(f"| {human_tokens(ctx)} | {human_bytes(teacher)} | {human_bytes(hybrid)} | {hybrid / teacher:.1%} |")
    lines += ["", "## Evaluation", ""]
    if evaluation:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in evaluation.items()]
    else:
        lines.append("Not distilled yet: expect lower quality than the original until `hybridize distill` runs.")
    return "\n".join(header + lines) + "\n"


def save_hybrid(model, tokenizer, output: str | Path, plan: Plan, shapes: Shapes, *, force: bool = False,
                record: dict | None = None, evaluation: dict | None = None,
                max_shard_size: str = "5GB") -> Path:
    """Write a complete hybrid checkpoint directory atomically and return its path."""
    modeling_dir = Path(__file__).parent / "modeling"
    with atomic_directory(output, force) as tmp:
        model.save_pretrained(tmp, max_shard_size=max_shard_size)
        for name in CHECKPOINT_FILES:  # save_pretrained copies most; make the set complete and explicit
            shutil.copyfile(modeling_dir / name, tmp / name)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / PLAN_FILE).write_text(plan.to_yaml())
        (tmp / RECORD_FILE).write_text(json.dumps({"hybridize_version": __version__, **(record or {})}, indent=2))
        (tmp / "README.md").write_text(model_card(model.config, shapes, plan, evaluation))
    return Path(output)


def read_record(path: str | Path) -> dict:
    f = Path(path) / RECORD_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def upload_plan(folder: str | Path) -> list[tuple[str, int]]:
    """(relative path, bytes) of every file `push` would upload."""
    root = Path(folder)
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def push(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create the repo if needed and upload the checkpoint; returns the repo URL.
    The token comes from `token`, HF_TOKEN or `huggingface-cli login`, and is never printed."""
    from huggingface_hub import HfApi
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                      commit_message=f"Upload hybrid checkpoint (hybridize {__version__})",
                      ignore_patterns=[".*"])
    return str(url)
