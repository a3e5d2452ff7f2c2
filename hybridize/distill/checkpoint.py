"""Run checkpoints: everything `--resume` needs to continue a run as if it had never stopped.

A checkpoint is a directory under <run_dir>/checkpoints/, written atomically (temporary sibling +
rename), holding:
    trainable.safetensors   the trainable tensors (mixers, LoRA, or all), by parameter name
    optimizer.pt, scheduler.pt
    rng-<rank>.pt           every random generator of each process (python, numpy, torch CPU, CUDA)
    state.json              stage, step, tokens, evaluations so far, length of metrics.jsonl
The data position needs no saving: step s always reads the same rows (see data.micro_batch).
Only the trainable tensors are saved: for an 8B model with LoRA that is megabytes, not 16 GB.
"""
from __future__ import annotations

import json
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import UserError
from ..export import atomic_directory

STATE_FILE = "state.json"
TRAINABLE_FILE = "trainable.safetensors"
FINAL_PREFIX = "final-"  # end-of-stage checkpoints, kept by the rotation
_STEP = re.compile(r"^(?P<stage>[a-z]+)-(?P<step>\d+)$")


class ResumeError(UserError):
    """A run directory that cannot be resumed as asked."""


@dataclass
class RunState:
    stage: str = ""  # stage in progress (or the last one finished)
    step: int = 0  # optimizer steps done in that stage
    tokens: int = 0  # training tokens consumed in that stage
    done: list[str] = field(default_factory=list)  # stages finished
    evaluation: dict = field(default_factory=dict)  # name -> metrics dict
    seconds: dict = field(default_factory=dict)  # stage -> training seconds so far
    peak_memory: dict = field(default_factory=dict)  # stage -> bytes
    metrics_bytes: int = 0  # metrics.jsonl is truncated to this on resume
    planned_steps: dict = field(default_factory=dict)  # stage -> steps, when a time cap shortened it
    final_loss: dict = field(default_factory=dict)  # stage -> its last training loss, once finished


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _dtensor():
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor
    return DTensor


def is_sharded(model: torch.nn.Module) -> bool:
    """FSDP2 (accelerate's fsdp_version 2): parameters are DTensors, each process holding a shard."""
    dtensor = _dtensor()
    return dtensor is not None and any(isinstance(p, dtensor) for p in model.parameters())


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Full trainable tensors on the CPU. Under FSDP2 every process must call it (the shards are
    gathered), in the same order."""
    dtensor = _dtensor()
    out = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            t = p.detach()
            if dtensor is not None and isinstance(t, dtensor):
                t = t.full_tensor()
            out[n] = t.contiguous().cpu()
    return out


def load_trainable(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = sorted(set(tensors) - set(params))
    if missing:
        raise ResumeError(f"the checkpoint holds tensors this model does not have ({missing[0]}, ...): "
                          "resume with the same options as the interrupted run")
    dtensor = _dtensor()
    with torch.no_grad():
        for name, value in tensors.items():
            p = params[name]
            value = value.to(device=p.device, dtype=p.dtype)
            if dtensor is not None and isinstance(p, dtensor):  # every process holds the full value: keep its shard
                from torch.distributed.tensor import distribute_tensor
                value = distribute_tensor(value, p.device_mesh, p.placements)
            p.copy_(value)


def _optimizer_state(model, optimizer, sharded: bool) -> dict:
    """The optimizer's state; under FSDP2 gathered into one full, name-keyed dict (torch's
    distributed state-dict API; a collective, the main process gets the result)."""
    if not sharded:
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
    return get_optimizer_state_dict(model, getattr(optimizer, "optimizer", optimizer),
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _load_optimizer_state(model, optimizer, state: dict) -> None:
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    set_optimizer_state_dict(model, getattr(optimizer, "optimizer", optimizer), optim_state_dict=state,
                             options=StateDictOptions(full_state_dict=True))


def save_checkpoint(path: Path, model, optimizer, scheduler, state: RunState, *, rank: int = 0,
                    is_main: bool = True, barrier=lambda: None) -> None:
    """Write one checkpoint; every process writes its own RNG file into the main one's directory.
    Under FSDP2 every process takes part in gathering the tensors; the main one writes them."""
    sharded = is_sharded(model)
    tensors = trainable_state(model) if is_main or sharded else None
    optim = _optimizer_state(model, optimizer, sharded) if optimizer is not None and (is_main or sharded) else None
    if is_main:
        with atomic_directory(path) as tmp:
            save_file(tensors, str(tmp / TRAINABLE_FILE))
            if optim is not None:
                torch.save(optim, tmp / "optimizer.pt")
            if scheduler is not None:
                torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            torch.save(rng_state(), tmp / "rng-0.pt")
            (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))
    barrier()
    if rank:
        torch.save(rng_state(), path / f"rng-{rank}.pt")
    barrier()


def read_state(path: Path) -> RunState:
    return RunState(**json.loads((path / STATE_FILE).read_text()))


def load_checkpoint(path: Path, model, optimizer=None, scheduler=None, *, rank: int = 0) -> RunState:
    load_trainable(model, load_file(str(path / TRAINABLE_FILE)))
    if optimizer is not None and (path / "optimizer.pt").is_file():
        _load_optimizer_state(model, optimizer, torch.load(path / "optimizer.pt", weights_only=False))
    if scheduler is not None and (path / "scheduler.pt").is_file():
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
    rng = path / f"rng-{rank}.pt"
    if rng.is_file():
        set_rng_state(torch.load(rng, weights_only=False))
    return read_state(path)


def step_dir(root: Path, stage: str, step: int) -> Path:
    return root / f"{stage}-{step:07d}"


def final_dir(root: Path, stage: str) -> Path:
    return root / f"{FINAL_PREFIX}{stage}"


def latest(root: Path, stage_order: list[str]) -> Path | None:
    """The most advanced checkpoint: a later stage beats an earlier one, a higher step a lower one,
    a stage's final checkpoint its step checkpoints."""
    best, key = None, None
    for d in root.glob("*") if root.is_dir() else []:
        if not (d / STATE_FILE).is_file():
            continue  # a temporary directory from an interrupted write
        if d.name.startswith(FINAL_PREFIX):
            stage, step = d.name[len(FINAL_PREFIX):], 1 << 62
        elif (m := _STEP.match(d.name)) is not None:
            stage, step = m["stage"], int(m["step"])
        else:
            continue
        if stage not in stage_order:
            continue
        k = (stage_order.index(stage), step)
        if key is None or k > key:
            best, key = d, k
    return best


def rotate(root: Path, stage: str, keep: int) -> None:
    """Delete all but the `keep` newest step checkpoints of `stage` (final ones stay)."""
    mine = sorted(d for d in root.glob(f"{stage}-*") if _STEP.match(d.name))
    for d in mine[:-keep] if keep > 0 else mine:
        shutil.rmtree(d, ignore_errors=True)
