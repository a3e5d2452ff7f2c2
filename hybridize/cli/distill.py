"""`hybridize distill`: attention transfer then end-to-end KD, from flags or one YAML config."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table


def _table(report) -> Table:
    table = Table(title="Distillation")
    for col in ("", "perplexity", "top-1 agreement", "KL"):
        table.add_column(col, justify="right")
    evals = report.evaluation
    teacher = next((e["teacher_ppl"] for e in evals.values() if "teacher_ppl" in e), None)
    if teacher is not None:
        table.add_row("original model", f"{teacher:.3f}", "", "")
    from ..distill.run import EVAL_NAMES
    for key, label in EVAL_NAMES.items():
        if key in evals:
            e = evals[key]
            table.add_row(label, f"{e['ppl']:.3f}", f"{e.get('top1_agreement', float('nan')):.1%}",
                          f"{e.get('kl', float('nan')):.4f}")
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def distill(
        model: str = typer.Argument(None, help="Converted checkpoint (from `hybridize convert`)."),
        output: Path = typer.Option(None, "--output", "-o", help="Directory for the distilled checkpoint."),
        config: Path = typer.Option(None, "--config", "-c", help="YAML with any of these options (flags win)."),
        data: str = typer.Option(None, "--data", "-d",
                                 help="Text: file, directory, glob (.txt .md .py .jsonl .parquet), Hub dataset id, "
                                      "or 'stdlib' (default)."),
        teacher: str = typer.Option(None, "--teacher", help="Original model, if the checkpoint does not record it."),
        stage: str = typer.Option(None, "--stage", help="all (default), attention or kd."),
        tokens: str = typer.Option(None, "--tokens", help="Stage-2 token budget, e.g. 20M."),
        attention_tokens: str = typer.Option(None, "--attention-tokens", help="Stage-1 token budget, e.g. 5M."),
        lr: float = typer.Option(None, "--lr", help="Stage-2 learning rate of the mixers."),
        attention_lr: float = typer.Option(None, "--attention-lr", help="Stage-1 learning rate."),
        lora_lr: float = typer.Option(None, "--lora-lr", help="Stage-2 learning rate of LoRA / other weights."),
        train: str = typer.Option(None, "--train", help="Stage-2 trainable set: lora (default), converted or all."),
        lora_rank: int = typer.Option(None, "--lora-rank"),
        temperature: float = typer.Option(None, "--temperature", help="KD temperature (default 1)."),
        ce_weight: float = typer.Option(None, "--ce-weight", help="Weight of cross-entropy on the labels."),
        top_k: int = typer.Option(None, "--top-k", help="Keep only the teacher's top-k logits (0: all)."),
        seq_len: int = typer.Option(None, "--seq-len", help="Tokens per packed row (default 2048)."),
        batch_size: int = typer.Option(None, "--batch-size", "-b", help="Rows per micro-batch per GPU."),
        grad_accum: int = typer.Option(None, "--grad-accum", help="Micro-batches per optimizer step."),
        seed: int = typer.Option(None, "--seed"),
        precision: str = typer.Option(None, "--precision", help="auto (bf16 on GPU), bf16 or fp32."),
        gradient_checkpointing: bool = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing"),
        backend: str = typer.Option(None, "--backend", help="Gated delta rule kernels: auto, torch, triton or fla."),
        checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Steps between checkpoints."),
        eval_every: int = typer.Option(None, "--eval-every", help="Steps between held-out losses (0: stage ends)."),
        eval_tokens: str = typer.Option(None, "--eval-tokens", help="Held-out tokens per evaluation, e.g. 256K."),
        heldout_fraction: float = typer.Option(None, "--heldout-fraction", help="Share of documents held out."),
        text_column: str = typer.Option(None, "--text-column", help="Text field of .jsonl / .parquet / Hub rows."),
        run_dir: Path = typer.Option(None, "--run-dir", help="Checkpoints and metrics (default: OUTPUT.run)."),
        resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in the run directory."),
        force: bool = typer.Option(False, "--force", help="Replace an existing output / run directory."),
    ) -> None:
        """Distil a converted hybrid from its original model: attention transfer, then end-to-end KD.

        Example: hybridize distill out/smol-3to1 --data 'docs/**/*.md' --tokens 20M -o out/smol-distilled

        Several GPUs: accelerate launch --num_processes 4 $(which hybridize) distill out/smol-3to1 -o out/smol-distilled
        """
        from ..distill import DistillOptions, distill as run_distill
        from . import console
        overrides = {
            "model": model, "output": str(output) if output else None, "data": data, "teacher": teacher,
            "stages": stage, "seq_len": seq_len, "batch_size": batch_size, "grad_accum": grad_accum, "seed": seed,
            "precision": precision, "backend": backend, "gradient_checkpointing": gradient_checkpointing,
            "checkpoint_every": checkpoint_every, "eval_every": eval_every, "eval_tokens": eval_tokens,
            "heldout_fraction": heldout_fraction, "text_column": text_column,
            "run_dir": str(run_dir) if run_dir else None, "resume": resume or None, "force": force or None,
            "attention": {"tokens": attention_tokens, "lr": attention_lr},
            "kd": {"tokens": tokens, "lr": lr, "lora_lr": lora_lr, "train": train, "lora_rank": lora_rank,
                   "temperature": temperature, "ce_weight": ce_weight, "top_k": top_k},
        }
        if config is not None:
            options = DistillOptions.from_yaml(config, **overrides)
        else:
            from ..distill.options import merge
            options = DistillOptions.from_dict(merge({}, overrides))
        report = run_distill(options, console=console)
        console.print(_table(report))
        console.print(f"[green]wrote[/] {report.output}  (metrics, loss.png and checkpoints: {report.run_dir})")
