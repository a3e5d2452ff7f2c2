"""What a run shows and leaves behind: a rich progress bar, metrics.jsonl, and loss.png."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

STAGE_TITLES = {"attention": "stage 1: attention transfer", "kd": "stage 2: distillation"}
LOSS_NAMES = {"attention": "normalised MSE", "kd": "KL(teacher || student)"}


def gpu_memory() -> str:
    if not torch.cuda.is_available():
        return "cpu"
    return f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"


class Monitor:
    """Progress bar (main process only) and the metrics file (appended, truncated on resume)."""

    def __init__(self, run_dir: Path, enabled: bool = True, console: Console | None = None):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.task = None

    def truncate(self, length: int) -> None:
        """Drop what an interrupted run logged after its last checkpoint."""
        if self.enabled and self.path.is_file():
            with open(self.path, "r+b") as f:
                f.truncate(length)

    def size(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else 0

    def log(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def start(self, stage: str, steps: int, done: int) -> None:
        if not self.enabled:
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[speed]} tok/s"),
            TextColumn("mem {task.fields[mem]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(STAGE_TITLES.get(stage, stage), total=steps, completed=done,
                                           loss="-", speed="-", mem=gpu_memory())
        self._t0, self._done0 = time.perf_counter(), done

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, loss=f"{loss:.4g}", speed=f"{tokens_per_s:,.0f}",
                                 mem=gpu_memory())

    def set_total(self, steps: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, total=steps)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def print(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False)


def plot(metrics: Path, output: Path) -> Path | None:
    """loss.png: one panel per stage, training loss (and held-out loss where measured) per token."""
    if not metrics.is_file():
        return None
    import matplotlib
    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    stages = [s for s in STAGE_TITLES if any(r.get("stage") == s and "loss" in r for r in rows)]
    if not stages:
        return None
    fig, axes = plt.subplots(1, len(stages), figsize=(6 * len(stages), 4), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        train = [r for r in rows if r.get("stage") == stage and "loss" in r]
        ax.plot([r["tokens"] for r in train], [r["loss"] for r in train], label="train")
        held = [r for r in rows if r.get("stage") == stage and "heldout_loss" in r]
        if held:
            ax.plot([r["tokens"] for r in held], [r["heldout_loss"] for r in held], "o-", label="held-out")
        ax.set_title(STAGE_TITLES[stage])
        ax.set_xlabel("training tokens")
        ax.set_ylabel(LOSS_NAMES[stage])
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output
