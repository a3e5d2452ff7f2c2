"""The evaluation `hybridize eval` runs: perplexity + agreement, perplexity vs context, recall.

Works on models already loaded (teacher first, then the hybrid), so it is usable from Python on any
pair of models; `hybridize.cli.evaluate` does the loading from checkpoint paths.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import NotEnoughText, iter_documents, token_windows
from .context import ContextPoint, max_context, perplexity_vs_context, plot_context
from .perplexity import TextScore, compare_models
from .recall import RecallConfig, RecallReport, count_samples, plot_passkey, run_recall

# (description, total) -> advance(n): how the suite reports progress without knowing about rich.
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class EvalOptions:
    text: str | list = "stdlib"
    # "auto": the held-out split (what distillation did not train on) when it holds a window of text,
    # else every document (a single file given to eval is meant to be scored whole)
    split: str = "auto"
    text_column: str = "text"
    seq_len: int = 512
    max_tokens: int = 8192
    batch_size: int = 2
    contexts: list[int] = field(default_factory=list)  # perplexity vs context (empty: skip)
    context_tokens: int = 16384  # tokens read per context length
    recall: bool = False
    recall_config: RecallConfig | None = None


@dataclass
class EvalReport:
    options: EvalOptions
    scores: list[TextScore]
    context: list[ContextPoint] = field(default_factory=list)
    recall: list[RecallReport] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        opts = self.options
        return {
            "text": opts.text, "split": opts.split, "seq_len": opts.seq_len,
            "tokens": self.scores[0].tokens if self.scores else 0,
            "perplexity": [s.to_dict() for s in self.scores],
            "context": [p.to_dict() for p in self.context],
            "recall": [r.to_dict() for r in self.recall],
            "files": dict(self.files),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def markdown(self) -> str:
        """The same tables the terminal shows, for model cards and result files."""
        lines = [f"Text: `{self.options.text}` ({self.options.split} split), windows of {self.options.seq_len} "
                 f"tokens, {self.scores[0].tokens:,} predicted tokens.", "",
                 "| model | perplexity | top-1 agreement | KL (nats/token) |", "|---|---|---|---|"]
        for s in self.scores:
            agree = "—" if s.agreement is None else f"{s.agreement:.1%}"
            kl = "—" if s.kl is None else f"{s.kl:.4f}"
            lines.append(f"| {s.model} | {s.perplexity:.2f} | {agree} | {kl} |")
        if self.context:
            names = list(self.context[0].perplexity)
            lines += ["", "| context | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
            for p in self.context:
                lines.append(f"| {p.context} | " + " | ".join(f"{p.perplexity[n]:.2f}" for n in names) + " |")
        if self.recall:
            lines += ["", "| model | passkey (mean) | " + " | ".join(f"MQAR {n} pairs" for n in self.recall[0].mqar)
                      + " | " + " | ".join(f"copy {n}" for n in self.recall[0].copy) + " |",
                      "|---|---|" + "---|" * (len(self.recall[0].mqar) + len(self.recall[0].copy))]
            for r in self.recall:
                lines.append(f"| {r.model} | {r.passkey_mean:.0%} | " + " | ".join(f"{v:.0%}" for v in r.mqar.values())
                             + " | " + " | ".join(copy_cell(r, n) for n in r.copy) + " |")
            lines.append("\nCopy cells: spans copied exactly (tokens right). Exact recall is greedy, all answer tokens.")
        return "\n".join(lines)


def copy_cell(report: RecallReport, span: int) -> str:
    return f"{report.copy[span]:.0%} ({report.copy_tokens[span]:.0%})"


def _windows(tokenizer, opts: EvalOptions) -> tuple[torch.Tensor, str]:
    split = "heldout" if opts.split == "auto" else opts.split
    try:
        docs = iter_documents(opts.text, split, text_column=opts.text_column)
        return token_windows(tokenizer, docs, opts.seq_len, opts.max_tokens), split
    except NotEnoughText:
        if opts.split != "auto":
            raise
    docs = iter_documents(opts.text, "all", text_column=opts.text_column)
    return token_windows(tokenizer, docs, opts.seq_len, opts.max_tokens), "all"


def _noop(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


def evaluate_models(
    models: dict[str, torch.nn.Module],
    tokenizer,
    options: EvalOptions | None = None,
    *,
    reference: str | None = None,
    output: str | Path | None = None,
    progress: ProgressFactory = _noop,
) -> EvalReport:
    """Run the suite on every model (the first one, or `reference`, is the one others are compared to).
    With `output`, plots are written there (the directory must exist)."""
    opts = options or EvalOptions()
    reference = reference or next(iter(models))
    windows, report_split = _windows(tokenizer, opts)
    advance = progress(f"perplexity on {windows.numel():,} tokens", windows.shape[0])
    scores = compare_models(models, windows, reference=reference, batch_size=opts.batch_size, on_batch=advance)
    opts = dataclasses.replace(opts, split=report_split)
    report = EvalReport(opts, scores)
    # Quality past the trained context is not what users will get: stay within every model's limit.
    limit = min(filter(None, (max_context(m) for m in models.values())), default=None)

    if opts.contexts:
        contexts = [c for c in opts.contexts if limit is None or c <= limit]
        advance = progress("perplexity vs context", len(contexts))
        report.context = perplexity_vs_context(
            models, tokenizer, lambda: iter_documents(opts.text, report_split, text_column=opts.text_column),
            contexts, tokens_per_context=opts.context_tokens, batch_size=1, on_step=lambda L, n: advance(1))
        if output is not None and report.context:
            plot_context(report.context, Path(output) / "context.png")
            report.files["context_plot"] = "context.png"

    if opts.recall:
        config = opts.recall_config or RecallConfig()
        if limit is not None:
            config = dataclasses.replace(config, lengths=[n for n in config.lengths if n <= limit] or [limit])
        advance = progress("recall: passkey, MQAR, copying", count_samples(config) * len(models))
        report.recall = run_recall(models, tokenizer, config, on_sample=advance)
        if output is not None:
            plot_passkey(report.recall, Path(output) / "passkey.png")
            report.files["passkey_heatmap"] = "passkey.png"
    return report
