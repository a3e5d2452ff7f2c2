"""Perplexity against context length: does the model still use what it read long ago?

For each context length L we cut the text into windows of L tokens and score only the last
`tail` tokens of every window (each of them sees at least L - tail earlier tokens). The same kind of
tokens is scored at every L, so a curve that falls with L means the model uses the extra context, and
one that rises means it loses track (a linear layer's memory is finite; a full layer's is not).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch

from ..data import Document, token_windows
from .perplexity import compare_models


@dataclass
class ContextPoint:
    context: int
    windows: int
    scored_tokens: int
    perplexity: dict[str, float]  # model name -> perplexity of the tail tokens

    def to_dict(self) -> dict:
        return asdict(self)


def max_context(model: torch.nn.Module) -> int | None:
    """The longest context the model was trained for (config.max_position_embeddings), if known."""
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def perplexity_vs_context(
    models: dict[str, torch.nn.Module],
    tokenizer,
    docs: Iterable[Document] | Callable[[], Iterable[Document]],
    contexts: list[int],
    *,
    tokens_per_context: int = 16384,
    tail: int = 128,
    batch_size: int = 1,
    on_step: Callable[[int, int], None] | None = None,
) -> list[ContextPoint]:
    """One ContextPoint per context length (shortest first). `docs` may be a callable returning a
    fresh iterator, so every length reads the text from its beginning. Lengths the text cannot fill
    with even one window are skipped."""
    points = []
    for L in sorted(set(contexts)):
        if L <= tail:
            raise ValueError(f"context {L} must be longer than the scored tail of {tail} tokens")
        source = docs() if callable(docs) else docs
        try:
            windows = token_windows(tokenizer, source, seq_len=L, max_tokens=max(tokens_per_context, L))
        except ValueError:  # DataError: the text is shorter than one window of L tokens
            continue
        scores = compare_models(models, windows, batch_size=batch_size, score_from=L - tail - 1)
        points.append(ContextPoint(L, windows.shape[0], scores[0].tokens, {s.model: s.perplexity for s in scores}))
        if on_step is not None:
            on_step(L, windows.shape[0])
    return points


def plot_context(points: list[ContextPoint], path, title: str = "Perplexity vs context") -> None:
    """A line per model: context length (log2 axis) against tail perplexity."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
    names = list(points[0].perplexity) if points else []
    for name in names:
        ax.plot([p.context for p in points], [p.perplexity[name] for p in points], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("perplexity of the last tokens")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
