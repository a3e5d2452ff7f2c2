"""`hybridize eval` (quality: teacher vs hybrid) and `hybridize bench` (speed and memory)."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import UserError

DEFAULT_TEXT = "stdlib"


def _console():
    from . import console
    return console


def _err_console():
    from . import err_console
    return err_console


def _int_list(text: str | None, what: str) -> list[int]:
    from ..plans import parse_tokens
    if not text:
        return []
    try:
        values = [parse_tokens(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise UserError(f"bad {what} {text!r}: write comma-separated sizes, e.g. 512,2K,8K") from err
    if any(v <= 0 for v in values):
        raise UserError(f"{what} must be positive, got {text!r}")
    return values


def _device(device: str | None) -> str:
    import torch
    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA device is available here; use --device cpu")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_pair(checkpoint: Path, teacher: str | None, with_teacher: bool, dtype: str, device: str, status):
    """{"teacher": ..., "hybrid": ...} (teacher first: it is the reference) and the hybrid's tokenizer."""
    from .. import api
    if not (checkpoint / "config.json").is_file():
        raise UserError(f"{checkpoint} is not a checkpoint directory (no config.json): "
                        "run `hybridize convert MODEL -o DIR` first")
    models = {}
    if with_teacher:
        status(f"loading the teacher ({teacher or api.teacher_source(checkpoint)})")
        base, base_tok = api.load_teacher(checkpoint, teacher=teacher, dtype=dtype, device=device)
        models["teacher"] = base
    status(f"loading the hybrid ({checkpoint})")
    hybrid, tokenizer = api.load(checkpoint, dtype=dtype, device=device)
    models["hybrid"] = hybrid
    if with_teacher and len(base_tok) != len(tokenizer):
        raise UserError(f"the teacher's tokenizer ({len(base_tok)} tokens) differs from the hybrid's "
                        f"({len(tokenizer)}): pass the model it was converted from with --teacher")
    return models, tokenizer


@contextmanager
def _progress():
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=_err_console(), transient=True) as progress:
        def factory(description: str, total: int):
            task = progress.add_task(description, total=total)
            return lambda n: progress.advance(task, n)

        def status(text: str):
            progress.console.print(f"[dim]{text}[/]", highlight=False)

        yield factory, status


@contextmanager
def _output_dir(output: Path | None, force: bool):
    """Write into a temporary sibling and rename at the end (nothing half-written is left behind)."""
    if output is None:
        yield None
        return
    from ..export import atomic_directory
    with atomic_directory(output, force) as tmp:
        yield tmp


def _quality_table(report) -> Table:
    table = Table(title=f"held-out text: {report.options.text} ({report.scores[0].tokens:,} tokens, "
                        f"windows of {report.options.seq_len})")
    for col in ("model", "perplexity", "top-1 agreement", "KL nats/token"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for s in report.scores:
        table.add_row(s.model, f"{s.perplexity:.2f}", "—" if s.agreement is None else f"{s.agreement:.1%}",
                      "—" if s.kl is None else f"{s.kl:.4f}")
    return table


def _context_table(points) -> Table:
    names = list(points[0].perplexity)
    table = Table(title="perplexity of the last 128 tokens vs context length")
    table.add_column("context", justify="right")
    for n in names:
        table.add_column(n, justify="right")
    for p in points:
        table.add_row(str(p.context), *(f"{p.perplexity[n]:.2f}" for n in names))
    return table


def _recall_table(reports) -> Table:
    first = reports[0]
    from ..evals.suite import copy_cell
    table = Table(title="exact recall (greedy); copy: spans exact (tokens right)")
    table.add_column("model")
    table.add_column("passkey", justify="right")
    for n in first.mqar:
        table.add_column(f"MQAR {n}", justify="right")
    for n in first.copy:
        table.add_column(f"copy {n}", justify="right")
    for r in reports:
        table.add_row(r.model, f"{r.passkey_mean:.0%}", *(f"{v:.0%}" for v in r.mqar.values()),
                      *(copy_cell(r, n) for n in r.copy))
    return table


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def evaluate(
        checkpoint: Path = typer.Argument(..., help="A hybrid checkpoint directory (from convert or distill)."),
        text: str = typer.Option(DEFAULT_TEXT, "--text", help="Text to score: a file, directory, glob, Hub dataset "
                                 "id, or 'stdlib' (Python's own source, always offline)."),
        split: str = typer.Option("auto", "--split", help="heldout, train, all, or auto (held-out documents when "
                                  "they fill a window, else all: a single file is scored whole)."),
        teacher: str = typer.Option(None, "--teacher", help="The original model (default: the one the checkpoint "
                                    "records)."),
        no_teacher: bool = typer.Option(False, "--no-teacher", help="Score the hybrid alone."),
        seq_len: int = typer.Option(512, "--seq-len", help="Tokens per window."),
        max_tokens: str = typer.Option("8K", "--max-tokens", help="Tokens of text to score, e.g. 16K (default 8K "
                                       "keeps a CPU run of a 135M model to a minute or two)."),
        batch_size: int = typer.Option(2, "--batch-size", help="Windows per forward."),
        contexts: str = typer.Option(None, "--contexts", help="Also perplexity vs context, e.g. 512,1K,2K,4K,8K."),
        recall: bool = typer.Option(False, "--recall", help="Also passkey / associative recall / copying tests."),
        recall_lengths: str = typer.Option("256,512,1K,2K", "--recall-lengths", help="Passkey context lengths."),
        text_column: str = typer.Option("text", "--text-column", help="Field holding the text in .jsonl/.parquet/datasets."),
        dtype: str = typer.Option("auto", "--dtype", help="auto (the checkpoint's), float32, bfloat16 or float16."),
        device: str = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: cuda when available)."),
        as_json: bool = typer.Option(False, "--json", help="Print the results as JSON (for scripts), no tables."),
        output: Path = typer.Option(None, "--output", "-o", help="Directory for report.json, report.md and plots."),
        force: bool = typer.Option(False, "--force", help="Replace an existing --output directory."),
    ) -> None:
        """Compare a hybrid with its teacher: perplexity, top-1 agreement and KL on held-out text;
        optionally perplexity vs context length and exact-recall tests (with a heatmap under -o).

        Example: hybridize eval out/smol-3to1 --contexts 512,1K,2K,4K --recall -o out/smol-eval
        """
        from ..evals.recall import RecallConfig
        from ..evals.suite import EvalOptions, evaluate_models
        from ..export import check_output
        if output is not None:
            check_output(output, force)  # fail before loading anything
        if split not in ("auto", "heldout", "train", "all"):
            raise UserError(f"unknown --split {split!r}: use auto, heldout, train or all")
        if seq_len < 2 or batch_size < 1:
            raise UserError("--seq-len must be at least 2 and --batch-size at least 1")
        tokens = _int_list(max_tokens, "--max-tokens")
        if len(tokens) != 1:
            raise UserError(f"--max-tokens takes one size, e.g. 16K, got {max_tokens!r}")
        options = EvalOptions(text=text, split=split, text_column=text_column, seq_len=seq_len, max_tokens=tokens[0],
                              batch_size=batch_size, contexts=_int_list(contexts, "--contexts"), recall=recall,
                              recall_config=RecallConfig(lengths=_int_list(recall_lengths, "--recall-lengths")))
        with _progress() as (factory, status), _output_dir(output, force) as tmp:
            models, tokenizer = _load_pair(checkpoint, teacher, not no_teacher, dtype, _device(device), status)
            report = evaluate_models(models, tokenizer, options, output=tmp, progress=factory)
            if tmp is not None:
                (tmp / "report.json").write_text(report.to_json())
                (tmp / "report.md").write_text(report.markdown() + "\n")
        if as_json:
            print(report.to_json())
            return
        console = _console()
        console.print(_quality_table(report))
        if report.context:
            console.print(_context_table(report.context))
        if report.recall:
            console.print(_recall_table(report.recall))
        if output is not None:
            console.print(f"wrote [bold]{output}[/]: report.json, report.md" +
                          "".join(f", {f}" for f in report.files.values()))

    @app.command()
    def bench(
        checkpoint: Path = typer.Argument(..., help="A hybrid checkpoint directory (from convert or distill)."),
        contexts: str = typer.Option(None, "--contexts", help="Context lengths (default 2K,8K,32K on GPU, "
                                     "512,2K on CPU); past the trained limit RoPE is simply extended."),
        batch: str = typer.Option(None, "--batch", help="Batch sizes (default 1,16 on GPU, 1 on CPU)."),
        teacher: str = typer.Option(None, "--teacher", help="The original model (default: the one recorded)."),
        no_teacher: bool = typer.Option(False, "--no-teacher", help="Benchmark the hybrid alone."),
        steps: int = typer.Option(16, "--steps", help="Timed decode steps per point."),
        max_prefill: str = typer.Option("32K", "--max-prefill", help="Longest real prefill; longer contexts are "
                                        "filled with synthetic keys/values (speed does not depend on content)."),
        dtype: str = typer.Option(None, "--dtype", help="Default bfloat16 on GPU, the checkpoint's on CPU."),
        device: str = typer.Option(None, "--device", help="cpu, cuda, ... (default: cuda when available)."),
        as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
        output: Path = typer.Option(None, "--output", "-o", help="Directory for bench.md, bench.json, bench.png."),
        force: bool = typer.Option(False, "--force", help="Replace an existing --output directory."),
    ) -> None:
        """Prefill latency, decode tokens/s and cache memory (measured and predicted) against context
        and batch size, teacher and hybrid in one run.

        Example: hybridize bench out/smol-3to1 --contexts 2K,8K,32K,128K --batch 1,16 -o out/smol-bench
        """
        from ..evals.bench import markdown_table, plot_bench, run_bench
        from ..export import check_output
        from ..plans import human_bytes, human_tokens
        if output is not None:
            check_output(output, force)
        dev = _device(device)
        gpu = dev.startswith("cuda")
        ctx = _int_list(contexts or ("2K,8K,32K" if gpu else "512,2K"), "--contexts")
        batches = _int_list(batch or ("1,16" if gpu else "1"), "--batch")
        prefill = _int_list(max_prefill, "--max-prefill")
        if steps < 1 or len(prefill) != 1:
            raise UserError("--steps must be at least 1 and --max-prefill one size, e.g. 32K")
        with _progress() as (factory, status), _output_dir(output, force) as tmp:
            models, _ = _load_pair(checkpoint, teacher, not no_teacher, dtype or ("bfloat16" if gpu else "auto"),
                                   dev, status)
            advance = factory("benchmark", len(models) * len(ctx) * len(batches))

            def on_row(row):
                advance(1)
                if not as_json:
                    speed = "OOM" if row.status != "ok" else f"{row.decode_tok_s:,.0f} tok/s"
                    status(f"{row.model:>8} context {human_tokens(row.context):>5} batch {row.batch:>3}: {speed}, "
                           f"cache {human_bytes(row.cache_predicted)}")

            rows = run_bench(models, ctx, batches, steps=steps, max_prefill=prefill[0], on_row=on_row)
            table = markdown_table(rows)
            if tmp is not None:
                (tmp / "bench.json").write_text(json.dumps([r.to_dict() for r in rows], indent=2))
                (tmp / "bench.md").write_text(table + "\n")
                plot_bench(rows, tmp / "bench.png")
        if as_json:
            print(json.dumps([r.to_dict() for r in rows], indent=2))
            return
        _console().print(table, highlight=False, soft_wrap=True)
        if output is not None:
            _console().print(f"wrote [bold]{output}[/]: bench.md, bench.json, bench.png")

