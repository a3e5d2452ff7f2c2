"""`distill(options)`: a converted checkpoint in, a distilled checkpoint out (the whole run).

Order: load the hybrid and attach its teacher's attention -> tokenise and pack the data -> evaluate
(converted, before distillation) -> stage 1 -> evaluate -> stage 2 -> evaluate -> merge LoRA, drop
the teacher modules, save in `convert`'s format with the figures in the model card. Every stage end
and every `checkpoint_every` steps leaves a checkpoint in <output>.run/, and `resume=True` picks up
from the newest one.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from unittest.mock import patch

import torch
from torch import nn

from . import checkpoint as ckpt
from .data import cached_training_rows, heldout_rows
from .monitor import Monitor, plot
from .options import DistillOptions, KDOptions, OptionsError
from .teacher import attach_teacher, detach_teacher, student_parameters
from .trainer import StageResult, Trainer

EVAL_NAMES = {"before": "converted, before distillation", "attention": "after attention transfer",
              "kd": "after distillation"}


@dataclass
class DistillReport:
    output: Path
    run_dir: Path
    evaluation: dict = field(default_factory=dict)  # "before" / "attention" / "kd" -> metrics
    stages: dict = field(default_factory=dict)  # stage -> StageResult
    model: nn.Module | None = None  # the distilled hybrid, as saved (LoRA merged, teacher dropped)


def lora_targets(model: nn.Module) -> list[str]:
    """Every linear layer outside the converted layers' attention slots (mixers train in full, the
    teacher's attention must stay the original) and outside the output head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and m is not head
            and ".student." not in f".{name}." and ".teacher." not in f".{name}."]


def prepare_kd(model: nn.Module, kd: KDOptions) -> nn.Module:
    """Set stage 2's trainable parameters: the mixers always; plus LoRA adapters on the rest
    (train="lora", returns a peft model) or every other weight except the teacher's (train="all")."""
    for p in model.parameters():
        p.requires_grad_(False)
    if kd.train == "lora":
        from peft import LoraConfig, get_peft_model
        config = LoraConfig(r=kd.lora_rank, lora_alpha=kd.lora_alpha, target_modules=lora_targets(model),
                            lora_dropout=0.0, bias="none")
        model = get_peft_model(model, config)  # adapters in float32 (peft's autocast_adapter_dtype)
    elif kd.train == "all":
        for name, p in model.named_parameters():
            if ".teacher." not in f".{name}":
                p.requires_grad_(True)
    for _, p in student_parameters(model):
        p.requires_grad_(True)
    _float32_trainable(model)
    return model


def _float32_trainable(model: nn.Module) -> None:
    """Master copies of trained weights in float32; frozen ones stay in the load dtype (autocast
    does the matrix products in bf16 either way)."""
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()


def finish_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Merge LoRA into the weights, drop the teacher attention, one dtype throughout."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    detach_teacher(model)
    _drop_gguf_marker(model)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(dtype)


def _drop_gguf_marker(model: nn.Module) -> None:
    """A hybrid converted from a GGUF file carries the GGUF "quantization" marker in its config, yet
    its weights were de-quantised on load: without this, save_pretrained refuses to write them."""
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if str(getattr(method, "value", method)).lower() == "gguf":
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config


def _prepare_run_dir(o: DistillOptions, is_main: bool) -> None:
    from ..export import check_output
    run = o.run_path
    check_output(o.output, o.force)
    has_checkpoints = (run / "checkpoints").is_dir() and any((run / "checkpoints").iterdir())
    if o.resume:
        if not has_checkpoints:
            raise ckpt.ResumeError(f"nothing to resume in {run}: run without --resume to start")
    elif run.exists():
        if not o.force:
            raise ckpt.ResumeError(f"{run} holds an earlier run: pass --resume to continue it, or --force to "
                                   "start over")
        if is_main:
            shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)


def _frozen_dtype(o: DistillOptions, cuda: bool) -> str:
    if o.dtype != "auto":
        return o.dtype
    return "bfloat16" if _precision(o, cuda) == "bf16" else "float32"


def _precision(o: DistillOptions, cuda: bool) -> str:
    return ("bf16" if cuda else "fp32") if o.precision == "auto" else o.precision


def model_card_figures(report_eval: dict, o: DistillOptions, tokens: dict) -> dict:
    out = {"held-out text": f"{o.data} (held-out split, {o.heldout_fraction:.0%} of documents), "
                            f"windows of {o.seq_len} tokens"}
    teacher = next((e["teacher_ppl"] for e in report_eval.values() if "teacher_ppl" in e), None)
    if teacher is not None:
        out["perplexity, original model"] = f"{teacher:.3f}"
    for key, label in EVAL_NAMES.items():
        if key in report_eval:
            e = report_eval[key]
            out[f"perplexity, {label}"] = f"{e['ppl']:.3f}"
            if "top1_agreement" in e:
                out[f"top-1 agreement with original, {label}"] = f"{e['top1_agreement']:.1%}"
    for stage, n in tokens.items():
        out[f"training tokens, {'attention transfer' if stage == 'attention' else 'distillation'}"] = f"{n:,}"
    return out


def distill(options: DistillOptions, *, accelerator=None, on_step=None, console=None) -> DistillReport:
    """Run the stages in `options` and write the distilled checkpoint to options.output."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from ..api import hybrid_plan
    from ..export import read_record, save_hybrid
    from ..modeling import HybridizeConfig
    from ..plans import Shapes

    o = options.validate()
    cuda = torch.cuda.is_available()
    # Trained decays drive parts of the chunked delta rule into denormal floats, which make CPU matrix
    # work 20-80x slower (measured) while adding nothing: flush them to zero (no effect on GPUs).
    torch.set_flush_denormal(True)
    acc = accelerator or Accelerator(mixed_precision="bf16" if _precision(o, cuda) == "bf16" else "no")
    _refuse_fsdp1(acc)
    if acc.is_main_process:  # one process checks and prepares; the others would see its new directory
        _prepare_run_dir(o, True)
    acc.wait_for_everyone()
    set_seed(o.seed)
    monitor = Monitor(o.run_path, enabled=acc.is_main_process, console=console)
    if acc.is_main_process and not o.resume:
        (o.run_path / "options.yaml").write_text(o.to_yaml())

    config = HybridizeConfig.from_pretrained(o.model)
    save_dtype = getattr(config, "dtype", None) or torch.float32
    save_dtype = getattr(torch, save_dtype) if isinstance(save_dtype, str) else save_dtype
    model, tokenizer = _load_with_teacher(o, _frozen_dtype(o, cuda), acc.device)
    set_backend(model, o.backend)
    shared_trained = bool(read_record(o.model).get("shared_weights_trained"))
    if shared_trained:
        # Only the converted layers' attention is read back from the teacher source; every shared
        # weight (MLPs, norms, full-attention layers) is this checkpoint's, which an earlier stage 2
        # changed (LoRA merged). The "teacher" below is that adapted model, not the original.
        monitor.print(f"warning: {o.model} was distilled before with its shared weights trained; the teacher "
                      "here is that adapted model, not the original. To keep the original as teacher, extend "
                      "the earlier run with --resume, or start again from the converted checkpoint.")
    if o.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    trainer = Trainer(model, o, acc, monitor, on_step=on_step)
    steps = {s: trainer.steps_for(getattr(o, s).tokens) for s in o.stages}
    counts = {s: steps[s] * trainer.rows_per_step() for s in o.stages}
    monitor.print(f"tokenising {o.data}: {sum(counts.values()) * o.seq_len:,} training tokens, "
                  f"{o.eval_tokens:,} held-out")
    row_args = dict(rows=sum(counts.values()), seq_len=o.seq_len, heldout_fraction=o.heldout_fraction,
                    text_column=o.text_column, seed=o.seed)
    # The first process tokenises (once, kept in the run directory for --resume); the others read.
    rows = cached_training_rows(o.run_path, tokenizer, o.data, build=acc.is_main_process, **row_args)
    acc.wait_for_everyone()
    rows = rows if rows is not None else cached_training_rows(o.run_path, tokenizer, o.data, build=False, **row_args)
    stage_rows, start = {}, 0
    for s in o.stages:
        stage_rows[s] = rows.take(slice(start, start + counts[s]))
        start += counts[s]
    heldout = heldout_rows(tokenizer, o.data, tokens=o.eval_tokens, seq_len=o.seq_len,
                           heldout_fraction=o.heldout_fraction, text_column=o.text_column)

    last = ckpt.latest(trainer.checkpoints, o.stages) if o.resume else None
    if last is not None:
        trainer.state = ckpt.read_state(last)
        monitor.truncate(trainer.state.metrics_bytes)
        final_attention = ckpt.final_dir(trainer.checkpoints, "attention")
        if "attention" in trainer.state.done and final_attention.is_dir():
            ckpt.load_checkpoint(final_attention, model, rank=acc.process_index)
    report = DistillReport(Path(o.output), o.run_path)
    evals = lambda: trainer.state.evaluation  # noqa: E731  (trainer.state is replaced on resume)

    if "before" not in evals():
        evals()["before"] = trainer.evaluate(heldout)
        _log_eval(monitor, "before", evals()["before"])
    if "attention" in o.stages and "attention" not in trainer.state.done:
        report.stages["attention"] = trainer.attention_transfer(stage_rows["attention"], heldout)
        trainer.state.done.append("attention")
        evals()["attention"] = trainer.evaluate(heldout)
        _log_eval(monitor, "attention", evals()["attention"])
        trainer._save("attention", step_dir=False)
    if "kd" in o.stages:
        trainer.model = prepare_kd(trainer.model, o.kd)
        report.stages["kd"] = trainer.distill(stage_rows["kd"], heldout)
        trainer.state.done.append("kd")
        evals()["kd"] = trainer.evaluate(heldout)
        _log_eval(monitor, "kd", evals()["kd"])
    state = trainer.state
    for s in o.stages:  # stages finished before a resume: figures from the saved state
        report.stages.setdefault(s, StageResult(steps=steps[s], tokens=counts[s] * o.seq_len,
                                                seconds=state.seconds.get(s, 0.0),
                                                peak_memory=state.peak_memory.get(s, 0),
                                                final_loss=state.final_loss.get(s, float("nan"))))
    report.evaluation = state.evaluation

    distilled = acc.unwrap_model(trainer.model)
    if ckpt.is_sharded(distilled):  # FSDP2: the main process rebuilds one whole model to save
        distilled = _unsharded_copy(distilled, o, acc.is_main_process, _frozen_dtype(o, cuda))
    final = finish_model(distilled, save_dtype) if distilled is not None else None
    if acc.is_main_process:
        png = plot(monitor.path, o.run_path / "loss.png")
        hyb = final.config.hybridize["mixer_options"]
        shapes = Shapes.from_config(final.config, qkv_bias=hyb.get("qkv_bias", False),
                                    qk_norm=hyb.get("qk_scale", False))
        figures = model_card_figures(state.evaluation, o, {s: report.stages[s].tokens for s in o.stages})
        trained = "kd" in o.stages and o.kd.train != "converted"
        record = {"source": config.hybridize.get("source"), "distilled_from": str(o.model),
                  "shared_weights_trained": shared_trained or trained,
                  "distill": o.to_dict(), "evaluation": state.evaluation,
                  "stages": {s: vars(r) | {"losses": None} for s, r in report.stages.items()}}
        _save_output(final, tokenizer, o, hybrid_plan(o.model), shapes, record, figures,
                     [monitor.path, png, o.run_path / "options.yaml"], save_hybrid)
    acc.wait_for_everyone()
    report.model = final
    return report


def _unsharded_copy(model: nn.Module, o: DistillOptions, is_main: bool, frozen: str) -> nn.Module | None:
    """Under FSDP2 each process holds a shard of every weight. Gather the trained tensors (every
    process takes part) and load them into a fresh CPU copy of the same structure on the main
    process; the frozen weights come from the checkpoint, in the dtype they were trained with."""
    tensors = ckpt.trainable_state(model)
    if not is_main:
        return None
    fresh, _ = _load_with_teacher(o, frozen, torch.device("cpu"))
    if "kd" in o.stages:
        fresh = prepare_kd(fresh, o.kd)  # the same trainable set (LoRA in float32), names included
    ckpt.load_trainable(fresh, tensors)
    return fresh


def _load_with_teacher(o: DistillOptions, frozen: str, device: torch.device):
    """The checkpoint (its own dtype: mixers saved in float32 stay exact), frozen weights cast to
    `frozen`, on `device`, with the original attention attached as the teacher."""
    from ..api import load, teacher_source
    with every_process_loads_weights():
        model, tokenizer = load(o.model)
        _set_dtypes(model, frozen)
        model.to(device)
        attach_teacher(model, o.teacher or teacher_source(o.model))
    return model, tokenizer


def every_process_loads_weights():
    """`accelerate launch` with FSDP sets FSDP_CPU_RAM_EFFICIENT_LOADING=true, and transformers then
    loads the real weights on the first process only (the others get placeholders for FSDP to fill
    when it shards the model). Here the evaluations and stage 1 run before any sharding, on every
    process: found on two H200s, where the second process evaluated an uninitialised model."""
    return patch.dict(os.environ, {"FSDP_CPU_RAM_EFFICIENT_LOADING": "false"})


def _refuse_fsdp1(acc) -> None:
    from accelerate.utils import DistributedType
    if acc.distributed_type == DistributedType.FSDP and not getattr(acc.state, "is_fsdp2", False):
        raise OptionsError("FSDP version 1 is not supported (stage 2 runs the teacher through the unwrapped "
                           "model): set fsdp_version: 2 in the accelerate config, or pass --fsdp_version 2")


def set_backend(model: nn.Module, backend: str) -> None:
    """Which gated-delta-rule implementation the mixers call (the saved config keeps its own)."""
    from ..modeling.mixers import GatedDeltaMixer
    if backend != "auto":
        for m in model.modules():
            if isinstance(m, GatedDeltaMixer):
                m.backend = backend


def _set_dtypes(model: nn.Module, frozen: str) -> None:
    """Mixers in float32 (they always train), everything else in the frozen dtype."""
    from ..modeling.mixers import GatedDeltaMixer
    mixer_params = {id(p) for m in model.modules() if isinstance(m, GatedDeltaMixer) for p in m.parameters()}
    dtype = getattr(torch, frozen)
    for p in model.parameters():
        want = torch.float32 if id(p) in mixer_params else dtype
        if p.dtype != want:
            p.data = p.data.to(want)


def _log_eval(monitor: Monitor, name: str, e: dict) -> None:
    monitor.log({"eval": name, **e})
    parts = [f"ppl {e['ppl']:.3f}"]
    if "teacher_ppl" in e:
        parts += [f"original {e['teacher_ppl']:.3f}", f"top-1 agreement {e['top1_agreement']:.1%}",
                  f"KL {e['kl']:.4f}"]
    monitor.print(f"[bold]held-out, {EVAL_NAMES[name]}:[/] " + ", ".join(parts))


def _save_output(model, tokenizer, o: DistillOptions, plan, shapes, record, figures, extras, save_hybrid) -> None:
    """The checkpoint (convert's format) plus the run's metrics, plot and options, in one rename."""
    from ..export import atomic_directory
    with atomic_directory(o.output, o.force) as tmp:
        inner = tmp / "checkpoint"
        save_hybrid(model, tokenizer, inner, plan, shapes, record=record, evaluation=figures)
        for item in inner.iterdir():
            item.rename(tmp / item.name)
        inner.rmdir()
        for extra in extras:
            if extra is not None and Path(extra).is_file():
                shutil.copyfile(extra, tmp / Path(extra).name)

