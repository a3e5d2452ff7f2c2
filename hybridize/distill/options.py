"""Every knob of a distillation run, in one dataclass that a YAML file or the CLI fills.

    model: out/smol-3to1          # a checkpoint written by `hybridize convert`
    data: /data/corpus/**/*.md    # file, directory, glob, Hub dataset id, or "stdlib"
    output: out/smol-distilled
    seq_len: 2048
    batch_size: 8
    stages: [attention, kd]
    attention: {tokens: 5M, lr: 1e-3}
    kd: {tokens: 20M, lr: 2e-4, train: lora, lora_rank: 16, temperature: 1.0}

`DistillOptions.from_yaml(path, **overrides)`; unknown keys are errors (a typo must not be ignored).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError

STAGES = ("attention", "kd")
TRAIN_MODES = ("converted", "lora", "all")
PRECISIONS = ("auto", "bf16", "fp32")


class OptionsError(UserError):
    """A distillation setting that is missing or out of range."""


@dataclass
class StageOptions:
    tokens: int = 5_000_000
    lr: float = 1e-3
    warmup: float = 0.05  # fraction of the steps
    min_lr: float = 0.1  # the cosine ends at min_lr * lr
    weight_decay: float = 0.0
    # Wall-clock cap (minutes, 0: none). After 10 steps the stage's length is cut to what fits, and
    # the cosine schedule is re-fitted to it, so a time-boxed job still ends with a decayed rate.
    max_minutes: float = 0.0

    def __post_init__(self):
        _coerce(self)


@dataclass
class AttentionOptions(StageOptions):
    pass


@dataclass
class KDOptions(StageOptions):
    tokens: int = 20_000_000
    lr: float = 2e-4
    train: str = "lora"  # converted | lora | all
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_lr: float | None = None  # LoRA / non-mixer weights; defaults to lr
    temperature: float = 1.0
    ce_weight: float = 0.0  # weight of cross-entropy on the labels, added to the KL
    top_k: int = 0  # keep only the teacher's top-k logits (0: all)


@dataclass
class DistillOptions:
    model: str = ""
    output: str = ""
    data: Any = "stdlib"
    teacher: str | None = None
    text_column: str = "text"
    heldout_fraction: float = 0.1
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    seq_len: int = 2048
    batch_size: int = 8
    grad_accum: int = 1
    seed: int = 0
    precision: str = "auto"  # bf16 autocast on GPUs, fp32 on CPU
    dtype: str = "auto"  # frozen weights: bfloat16 on GPUs, float32 on CPU; trainable ones are float32
    gradient_checkpointing: bool = False
    backend: str = "auto"  # gated delta rule implementation while training: auto | torch | triton | fla
    max_grad_norm: float = 1.0
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_every: int = 0  # steps; 0: only before and after each stage
    eval_tokens: int = 262_144
    run_dir: str | None = None  # checkpoints, metrics, plot; default: <output>.run
    resume: bool = False
    force: bool = False
    attention: AttentionOptions = field(default_factory=AttentionOptions)
    kd: KDOptions = field(default_factory=KDOptions)

    def __post_init__(self):
        _coerce(self)
        for name in ("attention", "kd"):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _build(AttentionOptions if name == "attention" else KDOptions, value, name))
        for stage in (self.attention, self.kd):
            if isinstance(stage.tokens, str):
                stage.tokens = _tokens(stage.tokens)
        if isinstance(self.eval_tokens, str):
            self.eval_tokens = _tokens(self.eval_tokens)
        if isinstance(self.stages, str):
            self.stages = [s.strip() for s in self.stages.split(",")] if self.stages != "all" else list(STAGES)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path(f"{self.output}.run")

    def validate(self) -> "DistillOptions":
        if not self.model:
            raise OptionsError("no model given: pass the converted checkpoint (hybridize distill out/smol-3to1 ...)")
        if not self.output:
            raise OptionsError("no output given: pass -o/--output DIR for the distilled checkpoint")
        bad = [s for s in self.stages if s not in STAGES]
        if bad or not self.stages:
            raise OptionsError(f"unknown stage(s) {bad or self.stages}: use attention, kd or both (--stage all)")
        self.stages = [s for s in STAGES if s in self.stages]  # always in order
        if self.kd.train not in TRAIN_MODES:
            raise OptionsError(f"unknown kd.train {self.kd.train!r}: use one of {', '.join(TRAIN_MODES)}")
        if self.backend not in ("auto", "torch", "triton", "fla"):
            raise OptionsError(f"unknown backend {self.backend!r}: use auto, torch, triton or fla")
        if self.precision not in PRECISIONS:
            raise OptionsError(f"unknown precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        for name, value in (("seq_len", self.seq_len), ("batch_size", self.batch_size),
                            ("grad_accum", self.grad_accum), ("checkpoint_every", self.checkpoint_every),
                            ("log_every", self.log_every), ("kd.lora_rank", self.kd.lora_rank)):
            if int(value) < 1:
                raise OptionsError(f"{name} must be at least 1, got {value}")
        if self.seq_len < 2:
            raise OptionsError(f"seq_len must be at least 2, got {self.seq_len}")
        for name, stage in (("attention", self.attention), ("kd", self.kd)):
            if stage.lr <= 0 or not 0 <= stage.warmup < 1 or not 0 <= stage.min_lr <= 1:
                raise OptionsError(f"{name}: lr must be > 0, warmup in [0, 1), min_lr in [0, 1]")
            if name in self.stages and stage.tokens < 1:
                raise OptionsError(f"{name}.tokens must be positive (e.g. --tokens 20M)")
        if self.kd.temperature <= 0:
            raise OptionsError(f"kd.temperature must be > 0, got {self.kd.temperature}")
        if self.kd.top_k < 0 or self.kd.ce_weight < 0:
            raise OptionsError("kd.top_k and kd.ce_weight must be >= 0")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> "DistillOptions":
        return _build(cls, d, "config")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> "DistillOptions":
        path = Path(path)
        if not path.is_file():
            raise OptionsError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise OptionsError(f"{path} is not valid YAML ({err.__class__.__name__}): fix the file") from err
        if not isinstance(data, dict):
            raise OptionsError(f"{path} must hold a mapping of options (model:, data:, output:, ...)")
        return cls.from_dict(merge(data, overrides))


def merge(base: dict, overrides: dict) -> dict:
    """`overrides` over `base`; nested dicts ("kd", "attention") merge key by key; None means unset."""
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, dict):
            out[key] = merge(out.get(key) or {}, value)
        else:
            out[key] = value
    return out


def _tokens(text: str) -> int:
    """Decimal token budgets ("20M" = 20,000,000; "1.5B"), as papers quote them."""
    t = str(text).strip().upper().replace("_", "").replace(",", "")
    mult = {"K": 10**3, "M": 10**6, "B": 10**9}.get(t[-1:], 1)
    try:
        return int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError as err:
        raise OptionsError(f"cannot read {text!r} as a token count: use e.g. 500K, 20M or 1B") from err


def _coerce(obj) -> None:
    """YAML 1.1 reads `1e-3` (no dot) as a string: turn numeric-looking strings into the field's type."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        kind = str(f.type)
        if isinstance(value, str) and kind.startswith("float"):
            try:
                setattr(obj, f.name, float(value))
            except ValueError as err:
                raise OptionsError(f"{f.name} must be a number, got {value!r}") from err


def _build(cls, data: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise OptionsError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return cls(**data)
