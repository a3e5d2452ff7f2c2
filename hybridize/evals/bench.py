"""Efficiency: prefill latency, decode tokens/s and cache memory against context length and batch.

For each (model, context L, batch B):
  1. prefill: one real forward over B x min(L, max_prefill) random tokens with a cache (timed when it
     covers all L tokens);
  2. longer contexts are synthetic: the attention layers' caches are extended with random keys/values
     up to L (decode speed depends on how much cache there is, not on what it holds), and RoPE simply
     runs past the trained limit (speed does not depend on quality);
  3. cache memory: measured (bytes of the tensors the cache holds, and on CUDA the allocator's growth
     while the cache was built) next to the prediction from the shapes (`hybridize.plans.cache_bytes`);
  4. decode: `steps` single-token forwards on that cache (eager PyTorch, as `generate()` runs them),
     after warm-up; tokens/s = B x steps / time.
Out-of-memory at one size is recorded as such and the sweep goes on.
"""
from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from ..plans import Plan, Shapes, cache_bytes, human_bytes, human_tokens
from .perplexity import model_device


@dataclass
class BenchRow:
    model: str
    context: int
    batch: int
    status: str = "ok"  # ok | oom: <what>
    prefill_ms: float | None = None  # None when the context was (partly) synthetic
    decode_ms: float | None = None  # per step (B tokens)
    decode_tok_s: float | None = None
    cache_bytes: int | None = None  # tensors held by the cache
    cache_allocated: int | None = None  # CUDA allocator growth while the cache was built
    cache_predicted: int | None = None  # from the shapes and the plan

    def to_dict(self) -> dict:
        return asdict(self)


def model_plan(model: torch.nn.Module) -> Plan | None:
    """The plan of a hybrid (from its config), None for an ordinary attention model."""
    hyb = getattr(model.config, "hybridize", None)
    if not hyb or not hyb.get("mixers"):
        return None
    return Plan(list(hyb["mixers"]), window=hyb.get("window"),
                conv_size=hyb.get("mixer_options", {}).get("conv_size", 4))


def model_shapes(model: torch.nn.Module) -> Shapes:
    """Shapes from the config (a hybrid's config is its base config, flattened), in the live dtype."""
    shapes = Shapes.from_config(model.config)
    return dataclasses.replace(shapes, dtype_bytes=next(model.parameters()).element_size())


def predicted_cache_bytes(model: torch.nn.Module, context: int, batch: int) -> int:
    return cache_bytes(model_shapes(model), model_plan(model), context, batch)


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def cache_tensor_bytes(cache) -> int:
    """Bytes of every distinct tensor held by a transformers cache's layers (keys, values, conv and
    recurrent states), whatever the layer type or transformers version calls them."""
    seen, total = set(), 0
    for layer in cache.layers:
        for value in vars(layer).values():
            for t in _tensors(value):
                key = (t.untyped_storage().data_ptr(), t.dtype, tuple(t.shape))
                # floating tensors are the cache's contents; integer scalars (lengths) are bookkeeping
                if t.numel() and t.is_floating_point() and key not in seen:
                    seen.add(key)
                    total += t.numel() * t.element_size()
    return total


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _allocated(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


@torch.no_grad()
def build_cache(model: torch.nn.Module, batch: int, context: int, max_prefill: int, generator: torch.Generator):
    """(cache, prefill seconds or None): a real prefill of up to `max_prefill` tokens, then synthetic
    keys/values for the rest of the context in every attention layer."""
    device = model_device(model)
    vocab = model.config.vocab_size
    real = min(context, max_prefill)
    ids = torch.randint(0, vocab, (batch, real), generator=generator).to(device)
    _sync(device)
    start = time.perf_counter()
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    _sync(device)
    seconds = time.perf_counter() - start
    cache = out.past_key_values
    del out
    extra = context - real
    if extra > 0:
        for layer in cache.layers:
            keys = getattr(layer, "keys", None)
            if isinstance(keys, torch.Tensor) and keys.numel():  # an attention layer: grow it by `extra`
                shape = (keys.shape[0], keys.shape[1], extra, keys.shape[3])
                k = torch.randn(shape, dtype=keys.dtype, device=keys.device)
                v = torch.randn(shape, dtype=layer.values.dtype, device=keys.device)
                layer.update(k, v)
                del k, v
        if hasattr(cache, "advance"):  # HybridCache counts tokens for models without attention layers
            cache.advance(extra)
    return cache, (seconds if extra == 0 else None)


@torch.no_grad()
def bench_one(model: torch.nn.Module, name: str, context: int, batch: int, *, steps: int = 16, warmup: int = 2,
              max_prefill: int = 32768, seed: int = 0) -> BenchRow:
    device = model_device(model)
    row = BenchRow(name, context, batch, cache_predicted=predicted_cache_bytes(model, context, batch))
    generator = torch.Generator().manual_seed(seed)
    cache = None
    try:
        gc.collect()
        before = _allocated(device)
        cache, prefill = build_cache(model, batch, context, max_prefill, generator)
        row.cache_allocated = _allocated(device) - before if device.type == "cuda" else None
        row.cache_bytes = cache_tensor_bytes(cache)
        row.prefill_ms = None if prefill is None else prefill * 1e3
        vocab = model.config.vocab_size
        for step in range(warmup + steps):
            if step == warmup:
                _sync(device)
                start = time.perf_counter()
            token = torch.randint(0, vocab, (batch, 1), generator=generator).to(device)
            model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)
        _sync(device)
        elapsed = time.perf_counter() - start
        row.decode_ms = elapsed / steps * 1e3
        row.decode_tok_s = batch * steps / elapsed
    except torch.OutOfMemoryError:
        row.status = "oom"
    finally:
        del cache
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def extend_positions(model: torch.nn.Module, length: int) -> None:
    """Let a model run past its trained context (RoPE is computed from positions on the fly)."""
    config = model.config
    if getattr(config, "max_position_embeddings", None) is not None and config.max_position_embeddings < length:
        config.max_position_embeddings = length


def run_bench(models: dict[str, torch.nn.Module], contexts: list[int], batches: list[int], *, steps: int = 16,
              max_prefill: int = 32768, on_row: Callable[[BenchRow], None] | None = None) -> list[BenchRow]:
    rows = []
    for name, model in models.items():
        extend_positions(model, max(contexts) + steps + 8)
        # one small forward first: lazy initialisation (kernels, autotuning) is not part of any figure
        bench_one(model, name, min(contexts), 1, steps=1, warmup=1, max_prefill=max_prefill)
        for batch in batches:
            for context in contexts:
                row = bench_one(model, name, context, batch, steps=steps, max_prefill=max_prefill)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    return rows


def _fmt(x, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def markdown_table(rows: list[BenchRow]) -> str:
    """One line per (context, batch): every model's figures, and the hybrid/teacher ratios when there
    are exactly two models (the first taken as the teacher)."""
    names = list(dict.fromkeys(r.model for r in rows))
    head = ["context", "batch"]
    for n in names:
        head += [f"{n} prefill ms", f"{n} decode tok/s", f"{n} cache (measured)", f"{n} cache (predicted)"]
    pair = len(names) == 2
    if pair:
        head += [f"cache {names[1]}/{names[0]}", f"decode {names[1]}/{names[0]}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = list(dict.fromkeys((r.context, r.batch) for r in rows))
    for context, batch in keys:
        cells = [human_tokens(context), str(batch)]
        by = {r.model: r for r in rows if r.context == context and r.batch == batch}
        for n in names:
            r = by.get(n)
            if r is None or r.status != "ok":
                cells += ["OOM" if r is not None else "—"] * 2 + ["—", human_bytes(r.cache_predicted) if r else "—"]
                continue
            measured = r.cache_allocated if r.cache_allocated is not None else r.cache_bytes
            cells += [_fmt(r.prefill_ms, ".1f"), _fmt(r.decode_tok_s, ".0f"), human_bytes(measured),
                      human_bytes(r.cache_predicted)]
        if pair:
            t, h = by.get(names[0]), by.get(names[1])
            cells.append(f"{h.cache_predicted / t.cache_predicted:.1%}" if t and h else "—")
            ok = t and h and t.decode_tok_s and h.decode_tok_s
            cells.append(f"{h.decode_tok_s / t.decode_tok_s:.2f}x" if ok else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_bench(rows: list[BenchRow], path) -> None:
    """Two panels: decode tokens/s and cache memory against context, a line per (model, batch)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for name in dict.fromkeys(r.model for r in rows):
        for batch in dict.fromkeys(r.batch for r in rows):
            sel = [r for r in rows if r.model == name and r.batch == batch]
            ok = [r for r in sel if r.status == "ok"]
            label = f"{name} (batch {batch})"
            speed.plot([r.context for r in ok], [r.decode_tok_s for r in ok], marker="o", label=label)
            memory.plot([r.context for r in sel], [r.cache_predicted / 2**20 for r in sel], marker="o", label=label)
    speed.set_ylabel("decode tokens/s")
    memory.set_ylabel("cache (MiB, predicted from shapes)")
    for ax in (speed, memory):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context (tokens)")
        ax.grid(alpha=0.3)
    memory.set_yscale("log")
    speed.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
