"""The distillation loop, on accelerate: one GPU, several (DDP), or the CPU, with the same code.

    from hybridize.distill import DistillOptions, distill
    distill(DistillOptions(model="out/smol-3to1", data="stdlib", output="out/smol-distilled"))

Stage 1 (attention transfer) runs the teacher once per batch; every converted layer's mixer sees the
teacher's input to that layer and back-propagates its own loss at once (no full student forward,
activations of one layer at a time). Its few parameters are averaged across processes by hand rather
than by DDP, which would expect one backward per forward. Stage 2 (end-to-end KD) runs the teacher
(same model, original attention, LoRA off) then the student, and is an ordinary DDP/FSDP step.
"""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import Stopped, UserError
from . import checkpoint as ckpt
from .attention_transfer import LayerLosses
from .data import Rows, micro_batch
from .evaluate import evaluate, transfer_loss
from .kd import ce_loss, kd_loss, next_token_labels
from .monitor import Monitor
from .options import DistillOptions
from .teacher import TRANSFER, switches, student_parameters, teacher_mode


class DivergedError(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def cosine_schedule(steps: int, warmup: float, min_lr: float):
    """Multiplier of the base learning rate at each step: linear warmup, then cosine to min_lr."""
    warm = max(1, int(round(warmup * steps))) if warmup > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, steps - warm))
        return min_lr + (1 - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class StopRequest:
    """SIGTERM (a scheduler's pre-emption, `timeout`) or a first Ctrl-C asks the loop to stop after the
    current optimizer step, save a checkpoint and exit, so `--resume` loses nothing. A second Ctrl-C
    interrupts at once. Handlers are only installed from the main thread (Python's rule)."""

    SIGNALS = {signal.SIGTERM: 143, signal.SIGINT: 130}

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame):
        self.signum = signum
        if signum == signal.SIGINT:  # the next Ctrl-C is the default KeyboardInterrupt
            signal.signal(signal.SIGINT, self._old.get(signal.SIGINT, signal.default_int_handler))

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


@dataclass
class StageResult:
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    peak_memory: int = 0
    final_loss: float = float("nan")
    losses: list[float] = field(default_factory=list)


class Trainer:
    """Runs the stages on a model that already carries its teacher (see teacher.attach_teacher)."""

    def __init__(self, model: nn.Module, options: DistillOptions, accelerator, monitor: Monitor,
                 state: ckpt.RunState | None = None, on_step=None):
        self.model, self.options, self.acc, self.monitor = model, options, accelerator, monitor
        self.state = state or ckpt.RunState()
        self.checkpoints = options.run_path / "checkpoints"
        self.on_step = on_step  # called after every optimizer step (tests interrupt runs here)

    # -- helpers ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.acc.device

    def rows_per_step(self) -> int:
        o = self.options
        return o.batch_size * o.grad_accum * self.acc.num_processes

    def steps_for(self, tokens: int) -> int:
        return max(1, tokens // (self.rows_per_step() * self.options.seq_len))

    def _reduce_mean(self, t: torch.Tensor) -> torch.Tensor:
        return self.acc.reduce(t, "mean") if self.acc.num_processes > 1 else t

    def _agreed(self, flag: bool) -> bool:
        """True on every process if it is true on any (a signal may reach only some ranks)."""
        if self.acc.num_processes == 1:
            return flag
        return bool(self.acc.reduce(torch.tensor(float(flag), device=self.device), "max"))

    def _fsdp(self) -> bool:
        from accelerate.utils import DistributedType
        return self.acc.distributed_type == DistributedType.FSDP

    def _reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        return self.acc.reduce(t, "sum") if self.acc.num_processes > 1 else t

    def _batch(self, rows: Rows, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.options
        b = micro_batch(rows, step=step, micro=micro, rank=self.acc.process_index, world=self.acc.num_processes,
                        batch_size=o.batch_size, grad_accum=o.grad_accum)
        return b.input_ids.to(self.device), b.position_ids.to(self.device)

    def _optimizer(self, groups: list[tuple[list[nn.Parameter], float]], weight_decay: float):
        groups = [{"params": p, "lr": lr} for p, lr in groups if p]
        fused = self.device.type == "cuda"
        return torch.optim.AdamW(groups, weight_decay=weight_decay, betas=(0.9, 0.95), fused=fused)

    def evaluate(self, rows: Rows, teacher: bool = True) -> dict:
        # The bare model: a DDP wrapper hides peft's disable_adapter, and the "teacher" would then
        # run with LoRA on (found on two processes: the original's perplexity moved after stage 2).
        return evaluate(self.acc.unwrap_model(self.model), rows, batch_size=self.options.batch_size, device=self.device,
                        autocast=self.acc.autocast, teacher=teacher, reduce=self._reduce_sum,
                        rank=self.acc.process_index, world=self.acc.num_processes)

    def heldout_transfer(self, rows: Rows) -> float:
        return transfer_loss(self.acc.unwrap_model(self.model), rows, batch_size=self.options.batch_size, device=self.device,
                             autocast=self.acc.autocast, reduce=self._reduce_sum,
                             rank=self.acc.process_index, world=self.acc.num_processes)

    # -- the shared loop ----------------------------------------------------------------------
    def _fit_to_time(self, stage: str, steps: int, step: int, elapsed: float, step_seconds: float, scheduler) -> int:
        """Shorten the stage to its time cap (measured speed) and re-fit the schedule to the new length."""
        s = getattr(self.options, stage)
        left = s.max_minutes * 60 - self.state.seconds.get(stage, 0.0) - elapsed
        fit = max(step + int(left / max(step_seconds, 1e-9)), step + 1)
        if fit >= steps:
            return steps
        scheduler.lr_lambdas = [cosine_schedule(fit, s.warmup, s.min_lr)] * len(scheduler.lr_lambdas)
        self.state.planned_steps[stage] = fit
        self.monitor.print(f"{stage}: {fit} of {steps} steps fit in max_minutes={s.max_minutes}; schedule re-fitted")
        return fit

    def _loop(self, stage: str, rows: Rows, params: list[nn.Parameter], optimizer, scheduler, micro_step,
              start_step: int, steps: int, heldout: Rows | None, heldout_fn) -> StageResult:
        o, acc = self.options, self.acc
        if stage in self.state.planned_steps:  # a resumed run keeps the length its time cap chose
            steps = self.state.planned_steps[stage]
            scheduler.lr_lambdas = [cosine_schedule(steps, getattr(o, stage).warmup, getattr(o, stage).min_lr)] \
                * len(scheduler.lr_lambdas)
        result = StageResult(steps=steps)
        tokens_per_step = self.rows_per_step() * o.seq_len
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.monitor.start(stage, steps, start_step)
        t_start, seconds_before = time.perf_counter(), self.state.seconds.get(stage, 0.0)
        window_t, window_tokens = time.perf_counter(), 0
        probe = 10  # steps timed before a time cap decides the stage's length
        # The first steps compile kernels (Triton, 30-60 s on a cold cache): left out of the step time,
        # or the cap cuts the stage far too short (on the H100 a 3.5-minute cap once trained 2.2 minutes).
        probe_from, t_probe = 2, t_start
        with StopRequest() as stop, contextlib.ExitStack() as cleanup:
            cleanup.callback(self.monitor.stop)
            step = start_step
            while step < steps:
                if step == start_step + probe_from:
                    t_probe = time.perf_counter()
                if getattr(o, stage).max_minutes and stage not in self.state.planned_steps \
                        and step == start_step + probe:
                    now = time.perf_counter()
                    step_seconds = (now - t_probe) / (probe - probe_from)
                    steps = self._fit_to_time(stage, steps, step, now - t_start, step_seconds, scheduler)
                    result.steps = steps
                    self.monitor.set_total(steps)
                loss = micro_step(step)  # device scalar, averaged over micro-batches and processes
                loss_value = float(loss)
                if not math.isfinite(loss_value):
                    optimizer.zero_grad(set_to_none=True)
                    last = ckpt.latest(self.checkpoints, self.stage_order())
                    raise DivergedError(
                        f"{stage}: the loss became {loss_value} at step {step + 1}; nothing after the last good "
                        f"checkpoint ({last or 'none yet'}) was kept. Lower the learning rate "
                        f"(--lr, now {getattr(o, stage).lr}) and run again with --resume")
                if o.max_grad_norm:
                    acc.clip_grad_norm_(params, o.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                done = step + 1
                self.state.stage, self.state.step = stage, done
                self.state.tokens = done * tokens_per_step
                window_tokens += tokens_per_step
                result.losses.append(loss_value)
                if done % o.log_every == 0 or done == steps:
                    now = time.perf_counter()
                    speed = window_tokens / max(now - window_t, 1e-9)
                    window_t, window_tokens = now, 0
                    record = {"stage": stage, "step": done, "tokens": self.state.tokens, "loss": loss_value,
                              "lr": scheduler.get_last_lr()[0], "tokens_per_s": speed,
                              "gpu_memory": torch.cuda.max_memory_allocated() if self.device.type == "cuda" else 0}
                    self.monitor.log(record)
                    self.monitor.update(done, loss_value, speed)
                if heldout is not None and o.eval_every and done % o.eval_every == 0 and done < steps:
                    self.monitor.log({"stage": stage, "step": done, "tokens": self.state.tokens,
                                      "heldout_loss": heldout_fn(heldout)})
                if self.on_step is not None:
                    self.on_step(stage, done)
                stopping = self._agreed(stop.signum is not None) and done < steps
                if (done % o.checkpoint_every == 0 or stopping) and done < steps:
                    path = self._save(stage, step_dir=True, optimizer=optimizer, scheduler=scheduler,
                                      t_start=t_start, seconds_before=seconds_before)
                    if stopping:
                        name = signal.Signals(stop.signum).name if stop.signum else "another process"
                        raise Stopped(f"{stage} stopped by {name} after step {done} of {steps}; checkpoint "
                                      f"{path}. Run the same command with --resume to continue",
                                      StopRequest.SIGNALS.get(stop.signum, 143))
                step += 1
        result.seconds = seconds_before + time.perf_counter() - t_start
        result.tokens = steps * tokens_per_step
        self.state.tokens = result.tokens
        result.final_loss = result.losses[-1] if result.losses else float("nan")
        if self.device.type == "cuda":
            result.peak_memory = max(torch.cuda.max_memory_allocated(self.device),
                                     self.state.peak_memory.get(stage, 0))
        self.state.seconds[stage] = result.seconds
        self.state.peak_memory[stage] = result.peak_memory
        self.state.final_loss[stage] = result.final_loss
        return result

    def stage_order(self) -> list[str]:
        return list(self.options.stages)

    def _save(self, stage: str, *, step_dir: bool, optimizer=None, scheduler=None, t_start=None,
              seconds_before=0.0) -> Path:
        if t_start is not None:  # inside the loop (a stage's final save comes after an evaluation,
            # whose logits would count as the stage's peak: 23 GiB instead of 1.9 for stage 1 on the H100)
            self.state.seconds[stage] = seconds_before + time.perf_counter() - t_start
            if self.device.type == "cuda":
                self.state.peak_memory[stage] = max(self.state.peak_memory.get(stage, 0),
                                                    torch.cuda.max_memory_allocated(self.device))
        self.state.metrics_bytes = self.monitor.size()
        path = (ckpt.step_dir(self.checkpoints, stage, self.state.step) if step_dir
                else ckpt.final_dir(self.checkpoints, stage))
        ckpt.save_checkpoint(path, self.acc.unwrap_model(self.model), optimizer, scheduler, self.state,
                             rank=self.acc.process_index, is_main=self.acc.is_main_process,
                             barrier=self.acc.wait_for_everyone)
        if self.acc.is_main_process and step_dir:
            ckpt.rotate(self.checkpoints, stage, self.options.keep_checkpoints)
        return path

    def _resume_into(self, stage: str, optimizer, scheduler) -> int:
        """Load the newest step checkpoint of `stage`, if resuming mid-stage; returns the start step."""
        last = ckpt.latest(self.checkpoints, self.stage_order()) if self.options.resume else None
        if last is None or last.name.startswith(ckpt.FINAL_PREFIX) or ckpt.read_state(last).stage != stage:
            return 0
        self.state = ckpt.load_checkpoint(last, self.acc.unwrap_model(self.model), optimizer, scheduler,
                                          rank=self.acc.process_index)
        self.monitor.truncate(self.state.metrics_bytes)
        self.monitor.print(f"resuming {stage} at step {self.state.step} from {last}")
        return self.state.step

    # -- stage 1 ------------------------------------------------------------------------------
    def attention_transfer(self, rows: Rows, heldout: Rows | None = None) -> StageResult:
        o, s = self.options, self.options.attention
        model = self.model
        for p in model.parameters():
            p.requires_grad_(False)
        params = [p for _, p in student_parameters(model)]
        for p in params:
            p.requires_grad_(True)
        optimizer = self._optimizer([(params, s.lr)], s.weight_decay)
        steps = self.steps_for(s.tokens)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(steps, s.warmup, s.min_lr))
        start = self._resume_into("attention", optimizer, scheduler)
        model.train()

        def micro_step(step: int) -> torch.Tensor:
            total = torch.zeros((), device=self.device)
            for micro in range(o.grad_accum):
                ids, pos = self._batch(rows, step, micro)
                losses = LayerLosses(scale=1.0 / o.grad_accum)
                for sw in switches(model):
                    sw.on_transfer = losses
                with torch.no_grad(), self.acc.autocast(), teacher_mode(model, TRANSFER):
                    model(input_ids=ids, position_ids=pos, use_cache=False, logits_to_keep=1)
                total += losses.total() / o.grad_accum
            for sw in switches(model):
                sw.on_transfer = None
            if self.acc.num_processes > 1:  # average the mixers' gradients by hand (no DDP wrapper here)
                for p in params:
                    if p.grad is not None:
                        p.grad = self.acc.reduce(p.grad, "mean")
            return self._reduce_mean(total)

        return self._loop("attention", rows, params, optimizer, scheduler, micro_step, start, steps, heldout,
                          self.heldout_transfer)

    # -- stage 2 ------------------------------------------------------------------------------
    def distill(self, rows: Rows, heldout: Rows | None = None) -> StageResult:
        """End-to-end KD. `self.model` must already have its stage-2 trainable set (see prepare_kd)."""
        o, k = self.options, self.options.kd
        student = {id(p) for _, p in student_parameters(self.model)}
        params = [p for p in self.model.parameters() if p.requires_grad]
        mixers = [p for p in params if id(p) in student]
        others = [p for p in params if id(p) not in student]
        optimizer = self._optimizer([(mixers, k.lr), (others, k.lora_lr or k.lr)], k.weight_decay)
        steps = self.steps_for(k.tokens)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(steps, k.warmup, k.min_lr))
        plugin = getattr(self.acc.state, "fsdp_plugin", None) if self._fsdp() else None
        if plugin is not None and self.acc.mixed_precision == "bf16":
            # FSDP2: trainable weights stay float32 masters (as everywhere here), compute in bf16
            # through FSDP's mixed-precision policy, and gradients reduced in float32 rather than
            # accelerate's default bf16.
            from torch.distributed.fsdp import MixedPrecisionPolicy
            plugin.mixed_precision_policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                                                 reduce_dtype=torch.float32)
        # The scheduler stays unprepared: accelerate would step it once per process per step.
        model, optimizer = self.acc.prepare(self.model, optimizer)
        self.model = model
        inner = self.acc.unwrap_model(model)  # under FSDP2 the same module (its hooks gather shards)
        params = [p for p in inner.parameters() if p.requires_grad]  # FSDP2 swapped them for DTensors
        # Resumed after prepare: FSDP2's sharded optimizer state only loads into the sharded model.
        start = self._resume_into("kd", optimizer, scheduler)
        model.train()

        def micro_step(step: int) -> torch.Tensor:
            total = torch.zeros((), device=self.device)
            for micro in range(o.grad_accum):
                ids, pos = self._batch(rows, step, micro)
                sync = micro == o.grad_accum - 1
                with self.acc.autocast():
                    with torch.no_grad(), teacher_mode(inner):
                        t_logits = inner(input_ids=ids, position_ids=pos, use_cache=False).logits
                    ctx = contextlib.nullcontext() if sync or self.acc.num_processes == 1 else self.acc.no_sync(model)
                    with ctx:
                        s_logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits
                        loss = kd_loss(s_logits, t_logits, temperature=k.temperature, top_k=k.top_k)
                        if k.ce_weight:
                            loss = loss + k.ce_weight * ce_loss(s_logits, next_token_labels(ids, pos))
                        self.acc.backward(loss / o.grad_accum)
                total += loss.detach() / o.grad_accum
                del t_logits, s_logits
            return self._reduce_mean(total)

        return self._loop("kd", rows, params, optimizer, scheduler, micro_step, start, steps, heldout,
                          lambda r: self.evaluate(r)["kl"])
