"""The Python API; the CLI is a thin layer over these functions.

    import hybridize
    plan = hybridize.plan("smollm2-135m", ratio="3:1")
    path = hybridize.convert("smollm2-135m", plan, output="out/smol-3to1")
    model, tokenizer = hybridize.load(path)
    report = hybridize.evaluate(path)
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .calibration import calibration_ids
from .export import read_record, save_hybrid
from .modeling import HybridizeConfig, HybridizeForCausalLM
from .plans import Plan, Shapes, load_plan, make_plan
from .sources import Source, load_config, load_model, resolve
from .surgery import convert as convert_in_place
from .surgery import shapes_of


def _register_auto_classes() -> None:
    """With hybridize imported, AutoModelForCausalLM loads hybrids without trust_remote_code."""
    from transformers import AutoConfig, AutoModelForCausalLM
    try:
        AutoConfig.register(HybridizeConfig.model_type, HybridizeConfig)
        AutoModelForCausalLM.register(HybridizeConfig, HybridizeForCausalLM)
    except ValueError:
        pass  # already registered


_register_auto_classes()


def base_shapes(source: str | Source) -> Shapes:
    """Shapes of a model from its config alone: the weights are never read (meta device)."""
    from transformers import AutoModelForCausalLM
    src = resolve(source) if isinstance(source, str) else source
    config = load_config(src)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    return shapes_of(skeleton)


def plan(model: str | Shapes, *, ratio: str | None = None, full_layers: list[int] | None = None,
         mixer: str = "gdn", window: int | None = None, plan_file: str | Path | None = None,
         conv_size: int = 4) -> Plan:
    """A plan for `model` (alias, Hub id, dir, .gguf, or its Shapes): by ratio, full-layer list or file."""
    shapes = model if isinstance(model, Shapes) else base_shapes(model)
    if plan_file is not None:
        p = load_plan(plan_file)
        p.check_layers(shapes.num_layers)
        return p
    return make_plan(shapes.num_layers, ratio=ratio, full_layers=full_layers, mixer=mixer, window=window,
                     conv_size=conv_size)


@dataclass
class ConversionReport:
    output: Path
    plan: Plan
    shapes: Shapes
    seconds: float
    peak_rss_bytes: int


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def convert(model: str, plan: Plan, output: str | Path, *, dtype: str = "auto", force: bool = False,
            device: str | None = None, calibration_tokens: int = 512, command: str | None = None,
            progress=None) -> ConversionReport:
    """Load `model`, apply `plan` layer by layer in place, and write the hybrid checkpoint to `output`.

    `calibration_tokens` of stdlib text go through the model once to set each new layer's output
    scale (0 skips it; see hybridize.surgery)."""
    from .export import check_output
    check_output(output, force)  # fail before the slow part
    start = time.perf_counter()
    source = resolve(model)
    base, tokenizer = load_model(source, dtype=dtype, device=device)
    shapes = shapes_of(base)
    ids = calibration_ids(tokenizer, calibration_tokens)
    hybrid = convert_in_place(base, plan, source=model, progress=progress, calibration_ids=ids)
    record = {"command": command, "source": model, "dtype": str(hybrid.dtype).replace("torch.", ""),
              "calibration_tokens": 0 if ids is None else ids.numel(), "plan": plan.to_dict()}
    path = save_hybrid(hybrid, tokenizer, output, plan, shapes, force=force, record=record)
    return ConversionReport(path, plan, shapes, time.perf_counter() - start, peak_rss_bytes())


def load(path: str | Path, *, dtype: str = "auto", device: str | None = None):
    """(hybrid model, tokenizer) from a checkpoint written by `convert` or `distill`."""
    from transformers import AutoTokenizer
    from .sources import DTYPES, SourceError
    path = Path(path)
    if not (path / "config.json").is_file():
        raise SourceError(f"{path} is not a hybrid checkpoint (no config.json): run `hybridize convert` first")
    config = HybridizeConfig.from_pretrained(path)
    if config.model_type != HybridizeConfig.model_type or not config.mixers:
        raise SourceError(f"{path} is not a hybridize checkpoint: its model_type is {config.model_type!r}")
    model = HybridizeForCausalLM.from_pretrained(path, dtype=DTYPES.get(dtype, dtype), device_map=device)
    return model.eval(), AutoTokenizer.from_pretrained(path)


def hybrid_plan(path: str | Path) -> Plan:
    config = HybridizeConfig.from_pretrained(path)
    hyb = config.hybridize
    return Plan(hyb["mixers"], window=hyb.get("window"), conv_size=hyb["mixer_options"].get("conv_size", 4),
                notes=hyb.get("plan_notes", {}))


def teacher_source(path: str | Path) -> str:
    """The model a hybrid was converted from, as the user named it."""
    config = HybridizeConfig.from_pretrained(path)
    source = config.hybridize.get("source") or read_record(path).get("source")
    if not source:
        from .sources import SourceError
        raise SourceError(f"{path} does not record its original model: pass --teacher")
    return source


def load_teacher(path: str | Path, *, teacher: str | None = None, dtype: str = "auto", device: str | None = None):
    return load_model(resolve(teacher or teacher_source(path)), dtype=dtype, device=device)
