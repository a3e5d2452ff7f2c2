"""One model, two roles: every converted layer holds its new mixer *and* the original attention.

`attach_teacher(hybrid, path)` puts an `AttentionSwitch` in place of each converted layer's
`self_attn`: `.student` is the mixer, `.teacher` the original attention module (weights read back from
the teacher source), and `.mode` picks which one runs. Everything else (embeddings, MLPs, norms, full
attention layers) is shared, so an 8B teacher never costs a second copy. `teacher_mode(model)` runs
the original model (LoRA adapters off, sliding-window layers on their full causal mask);
`detach_teacher(model)` puts the plain mixers back before saving, so the saved keys are the hybrid's.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from ..modeling.mixers import LINEAR_MIXERS
from ..modeling.modeling_hybridize import ATTENTION_ATTR, decoder_layers

STUDENT, TEACHER, TRANSFER = "student", "teacher", "transfer"
_HYBRID_KWARG_PREFIX = "hybridize_"  # keyword arguments only the mixers understand


class TeacherError(UserError):
    """The original attention weights cannot be found for a converted checkpoint."""


class AttentionSwitch(nn.Module):
    """Stands in for `self_attn` of a converted layer during distillation.

    mode "student": the mixer runs (the hybrid); "teacher": the original attention runs (the
    original model); "transfer": the teacher runs and its output goes on to the next layer, while
    `on_transfer(layer_idx, student_output, teacher_output)` receives the mixer's output on the same
    (detached) input, with gradients in training mode: attention transfer, one teacher forward for
    all layers."""

    def __init__(self, student: nn.Module, teacher: nn.Module, layer_idx: int):
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.layer_idx = layer_idx
        self.mode = STUDENT
        self.on_transfer: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        if self.mode == STUDENT:
            return self.student(hidden_states, *args, **kwargs)
        # The original attention gets no cache: this layer's cache slot holds a linear state, not
        # keys/values. Teacher passes are single forwards (distillation, evaluation), never decoding.
        plain = {k: v for k, v in kwargs.items() if not k.startswith(_HYBRID_KWARG_PREFIX) and k != "past_key_values"}
        if self.mode == TEACHER:
            return self.teacher(hidden_states, *args, **plain)
        with torch.no_grad():
            out = self.teacher(hidden_states, *args, **plain)
        if self.on_transfer is not None:
            with torch.set_grad_enabled(self.training):  # the outer forward runs under no_grad
                student_out = self.student(hidden_states.detach(), *args, **kwargs)[0]
                self.on_transfer(self.layer_idx, student_out, out[0])
        return out


def switches(model: nn.Module) -> list[AttentionSwitch]:
    return [m for m in model.modules() if isinstance(m, AttentionSwitch)]


def _hybrid_of(model: nn.Module) -> nn.Module:
    """The HybridizeForCausalLM inside a peft / DDP / compiled wrapper."""
    for module in model.modules():
        if hasattr(module, "_first_swa") and hasattr(module, "config"):
            return module
    raise TypeError(f"{type(model).__name__} holds no hybridize model")


def set_mode(model: nn.Module, mode: str) -> None:
    for s in switches(model):
        s.mode = mode


@contextlib.contextmanager
def teacher_mode(model: nn.Module, mode: str = TEACHER) -> Iterator[None]:
    """Run the original model inside this block: original attention in every converted layer, full
    causal masks in sliding-window layers, LoRA adapters disabled."""
    hybrid = _hybrid_of(model)
    saved = (hybrid._first_swa, [s.mode for s in switches(model)])
    hybrid._first_swa = None  # no sliding mask is built: those layers see the full causal mask
    set_mode(model, mode)
    try:
        with _adapters_off(model):
            yield
    finally:
        hybrid._first_swa = saved[0]
        for s, m in zip(switches(model), saved[1]):
            s.mode = m


@contextlib.contextmanager
def _adapters_off(model: nn.Module) -> Iterator[None]:
    """LoRA layers skip their adapters inside the block; nothing else changes. Not peft's
    disable_adapter(): it also switches the adapters' requires_grad off and on, and under FSDP2
    (the teacher's forward is the first one, when FSDP decides which parameters train) the layers
    whose only trainable weights are LoRA were taken as frozen, their bf16 gradients never cast
    back to float32 (found on two H200s); and its re-enable reached the unsharded copies, so the
    sharded LoRA weights stayed frozen and were left out of checkpoints."""
    if not hasattr(model, "disable_adapter"):  # not a peft model
        yield
        return
    from peft.tuners.tuners_utils import BaseTunerLayer
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    saved = [m._disable_adapters for m in layers]
    for m in layers:
        m._disable_adapters = True  # what BaseTunerLayer.forward checks; merged weights never occur here
    try:
        yield
    finally:
        for m, was in zip(layers, saved):
            m._disable_adapters = was


def converted_layers(hybrid: nn.Module) -> list[int]:
    return [i for i, m in enumerate(hybrid.config.mixers) if m in LINEAR_MIXERS]


def _attention_skeletons(hybrid: nn.Module, layers: list[int]) -> dict[int, nn.Module]:
    """Empty original-architecture attention modules for `layers` (built on meta, then allocated)."""
    from transformers import AutoModelForCausalLM
    base_config = hybrid.config.base_config()
    base_config._attn_implementation = hybrid.config._attn_implementation
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(base_config)
    found = decoder_layers(skeleton)
    return {i: getattr(found[i], ATTENTION_ATTR) for i in layers}


def _safetensors_files(path: str) -> tuple[Path, list[str]] | None:
    """(folder, shard names) of a safetensors checkpoint: a local directory or a Hub id."""
    local = Path(path)
    if not local.is_dir():
        try:
            from huggingface_hub import snapshot_download
            local = Path(snapshot_download(path, allow_patterns=["*.safetensors", "*.safetensors.index.json"]))
        except Exception:  # offline, gated, missing: the caller falls back to loading the model
            return None
    index = local / "model.safetensors.index.json"
    if index.is_file():
        return local, sorted(set(json.loads(index.read_text())["weight_map"].values()))
    single = local / "model.safetensors"
    return (local, ["model.safetensors"]) if single.is_file() else None


def _read_attention_tensors(path: str, prefixes: dict[int, str]) -> dict[int, dict[str, torch.Tensor]] | None:
    """Only the attention tensors of `layers`, read lazily from safetensors shards."""
    from safetensors import safe_open
    files = _safetensors_files(path)
    if files is None:
        return None
    folder, shards = files
    out: dict[int, dict[str, torch.Tensor]] = {i: {} for i in prefixes}
    for shard in shards:
        with safe_open(str(folder / shard), framework="pt") as f:
            for key in f.keys():
                for i, prefix in prefixes.items():
                    if key.startswith(prefix):
                        out[i][key[len(prefix):]] = f.get_tensor(key)
    return out if all(out.values()) else None


def original_attention(hybrid: nn.Module, source: str, layers: list[int] | None = None) -> dict[int, nn.Module]:
    """The original attention modules of the converted layers, with the teacher's weights.

    Safetensors sources (local or Hub): only the attention tensors are read. Anything else (GGUF,
    renamed keys): the teacher is loaded on the CPU once and its attention modules are kept."""
    from ..sources import load_model, resolve
    layers = converted_layers(hybrid) if layers is None else layers
    src = resolve(source)
    dtype = next(hybrid.parameters()).dtype
    device = next(hybrid.parameters()).device
    names = {i: n for n, m in hybrid.named_modules() for i in layers
             if m is getattr(decoder_layers(hybrid)[i], ATTENTION_ATTR)}
    tensors = None if src.is_gguf else _read_attention_tensors(src.path, {i: f"{names[i]}." for i in layers})
    if tensors is not None:
        modules = _attention_skeletons(hybrid, layers)
        for i, module in modules.items():
            module.to_empty(device=device)
            missing, unexpected = module.load_state_dict(tensors[i], strict=False)
            if missing or unexpected:
                tensors = None
                break
            module.to(dtype)
        else:
            return modules
    teacher, _ = load_model(src, dtype="float32")
    found = decoder_layers(teacher)
    modules = {i: getattr(found[i], ATTENTION_ATTR).to(device=device, dtype=dtype) for i in layers}
    del teacher
    return modules


def attach_teacher(hybrid: nn.Module, source: str | None = None,
                   modules: dict[int, nn.Module] | None = None) -> list[AttentionSwitch]:
    """Wrap each converted layer's mixer with its original attention (frozen); returns the switches.

    Give `modules` (layer -> attention module) directly, or `source` (what `hybridize.api.teacher_source`
    returns, or any model spec) to read them."""
    if switches(hybrid):
        return switches(hybrid)
    layers = converted_layers(hybrid)
    if not layers:
        raise TeacherError("this checkpoint has no converted (gdn/kda) layers: nothing to distil")
    if modules is None:
        if source is None:
            raise TeacherError("no teacher given: pass --teacher MODEL (the model the hybrid was converted from)")
        modules = original_attention(hybrid, source, layers)
    found = decoder_layers(hybrid)
    out = []
    for i in layers:
        teacher = modules[i]
        teacher.requires_grad_(False)
        switch = AttentionSwitch(getattr(found[i], ATTENTION_ATTR), teacher, i)
        setattr(found[i], ATTENTION_ATTR, switch)
        out.append(switch)
    return out


def detach_teacher(model: nn.Module) -> None:
    """Put the plain mixers back (the teacher attention modules are dropped)."""
    for layer in decoder_layers(_hybrid_of(model)):
        attn = getattr(layer, ATTENTION_ATTR)
        if isinstance(attn, AttentionSwitch):
            setattr(layer, ATTENTION_ATTR, attn.student)


def student_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """(name, parameter) of every mixer (the new, always-trainable part)."""
    for name, param in model.named_parameters():
        if ".student." in f".{name}":
            yield name, param
