"""Plan: which mixer each layer gets. The one source of truth that convert, distill and export read.

Placement rule for `--ratio L:F` over n layers: keep round(n * F / (L + F)) layers full (at least one
when F > 0), spread evenly from the top so that the last layer is always full (as in Qwen3-Next):
full = { n - 1 - floor(i * n / n_full) : i = 0 .. n_full - 1 }.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import UserError

MIXERS = ("gdn", "kda", "swa", "full")
LINEAR = ("gdn", "kda")
PLAN_VERSION = 1


class PlanError(UserError):
    """A plan that cannot be applied; the message says what is wrong and how to fix it."""


@dataclass
class Plan:
    mixers: list[str]
    window: int | None = None  # sliding-window size, shared by every "swa" layer
    conv_size: int = 4
    notes: dict = field(default_factory=dict)  # how the plan was made (ratio, list, file)

    def __post_init__(self):
        self.mixers = [str(m).lower() for m in self.mixers]
        unknown = sorted({m for m in self.mixers if m not in MIXERS})
        if unknown:
            raise PlanError(f"unknown mixer {', '.join(unknown)}: use one of {', '.join(MIXERS)}")
        if "swa" in self.mixers:
            if self.window is None:
                raise PlanError("sliding-window layers need a window: pass --window N (N > 0)")
            if not isinstance(self.window, int) or self.window <= 0:
                raise PlanError(f"window must be a positive number of tokens, got {self.window!r}")
        if not isinstance(self.conv_size, int) or self.conv_size < 1:
            raise PlanError(f"conv_size must be a positive integer, got {self.conv_size!r}")
        if all(m == "full" for m in self.mixers):
            raise PlanError("the plan replaces no layer: lower the full share of --ratio or name fewer --full-layers")

    @property
    def num_layers(self) -> int:
        return len(self.mixers)

    @property
    def full_layers(self) -> list[int]:
        return [i for i, m in enumerate(self.mixers) if m == "full"]

    @property
    def replaced_layers(self) -> list[int]:
        return [i for i, m in enumerate(self.mixers) if m != "full"]

    def check_layers(self, num_layers: int) -> None:
        if num_layers != self.num_layers:
            raise PlanError(f"the plan has {self.num_layers} layers but the model has {num_layers}: "
                            "make the plan for this model (hybridize plan MODEL ...)")

    def to_dict(self) -> dict:
        d = {"hybridize_plan": PLAN_VERSION, "num_layers": self.num_layers, "mixers": list(self.mixers),
             "conv_size": self.conv_size}
        if self.window is not None:
            d["window"] = self.window
        if self.notes:
            d["notes"] = dict(self.notes)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        if not isinstance(d, dict) or "mixers" not in d:
            raise PlanError("a plan file needs a `mixers:` list (one of gdn/kda/swa/full per layer)")
        mixers = d["mixers"]
        if isinstance(mixers, dict):  # {layer: mixer} with a default for the rest
            n = d.get("num_layers")
            if n is None:
                raise PlanError("a `mixers:` mapping needs `num_layers:` too")
            default = d.get("default", "full")
            mixers = [mixers.get(i, default) for i in range(n)]
        plan = cls(mixers=list(mixers), window=d.get("window"), conv_size=d.get("conv_size", 4),
                   notes=d.get("notes", {}))
        if "num_layers" in d and d["num_layers"] != plan.num_layers:
            raise PlanError(f"num_layers is {d['num_layers']} but `mixers` lists {plan.num_layers}")
        return plan


def parse_ratio(ratio: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(ratio))
    if not m:
        raise PlanError(f"bad ratio {ratio!r}: write LINEAR:FULL, e.g. 3:1 (or 1:0 to replace every layer)")
    linear, full = int(m.group(1)), int(m.group(2))
    if linear == 0:
        raise PlanError(f"ratio {ratio} replaces no layer: the first number counts replaced layers")
    return linear, full


def evenly_spaced_full(num_layers: int, linear: int, full: int) -> list[int]:
    if full == 0:
        return []
    n_full = max(1, math.floor(num_layers * full / (linear + full) + 0.5))
    return sorted({num_layers - 1 - math.floor(i * num_layers / n_full) for i in range(n_full)})


def make_plan(
    num_layers: int,
    *,
    ratio: str | None = None,
    full_layers: list[int] | None = None,
    mixer: str = "gdn",
    window: int | None = None,
    conv_size: int = 4,
) -> Plan:
    """A plan by ratio (evenly spaced full layers) or by an explicit list of full layers."""
    if (ratio is None) == (full_layers is None):
        raise PlanError("give exactly one of --ratio L:F or --full-layers i,j,k (or a plan file)")
    mixer = mixer.lower()
    if mixer not in MIXERS or mixer == "full":
        raise PlanError(f"unknown mixer {mixer!r}: --mixer takes gdn, kda or swa")
    if ratio is not None:
        linear, full = parse_ratio(ratio)
        keep = evenly_spaced_full(num_layers, linear, full)
        notes = {"ratio": f"{linear}:{full}", "mixer": mixer}
    else:
        bad = [i for i in full_layers if not 0 <= i < num_layers]
        if bad:
            raise PlanError(f"layer index {bad[0]} is out of range: the model has layers 0..{num_layers - 1}")
        keep = sorted(set(full_layers))
        notes = {"full_layers": keep, "mixer": mixer}
    return Plan(["full" if i in keep else mixer for i in range(num_layers)], window=window,
                conv_size=conv_size, notes=notes)


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"plan file {path} does not exist: write one with `hybridize plan MODEL -o {path}`")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise PlanError(f"plan file {path} is not valid YAML ({err.__class__.__name__}): fix its syntax") from err
    return Plan.from_dict(data)


def parse_layer_list(text: str) -> list[int]:
    try:
        return [int(x) for x in str(text).replace(" ", "").split(",") if x]
    except ValueError as err:
        raise PlanError(f"bad layer list {text!r}: write comma-separated indices, e.g. 3,7,11") from err
