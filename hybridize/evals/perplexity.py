"""Perplexity of several models on the same token windows, and their agreement with a reference.

All models see the same batches in lock-step, so a teacher and its hybrid are compared token by
token without storing any logits: per batch we keep only running sums of
    - the next-token negative log-likelihood (perplexity = exp(mean NLL)),
    - top-1 agreement with the reference model (same argmax at the same position),
    - KL(reference || model), in nats per token, computed in float32 from the full distributions.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class TextScore:
    model: str
    tokens: int  # predicted tokens (windows x (seq_len - 1), or the scored tail)
    nll: float  # mean negative log-likelihood, nats per token
    perplexity: float
    agreement: float | None = None  # top-1 agreement with the reference (None for the reference)
    kl: float | None = None  # KL(reference || this model), nats per token

    def to_dict(self) -> dict:
        return asdict(self)


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def logits_of(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Float32 logits [B, T, V] of one no-cache forward; the batch moves to the model's device."""
    out = model(input_ids=input_ids.to(model_device(model)), use_cache=False)
    logits = out.logits if hasattr(out, "logits") else out[0]
    return logits.float()


def _batches(windows: torch.Tensor, batch_size: int):
    for start in range(0, windows.shape[0], batch_size):
        yield windows[start:start + batch_size]


@torch.no_grad()
def compare_models(
    models: dict[str, torch.nn.Module],
    windows: torch.Tensor,
    *,
    reference: str | None = None,
    batch_size: int = 4,
    score_from: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> list[TextScore]:
    """Score every model on `windows` [N, T]; agreement and KL are against `models[reference]`.

    Position t predicts token t + 1. Only predictions of tokens at index > `score_from` count
    (`score_from` > 0 measures tokens that have at least that much context).
    `on_batch(n)` is called with the number of windows done after each batch (progress bars)."""
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must be [N, T] with T >= 2, got {tuple(windows.shape)}")
    if reference is not None and reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models {list(models)}")
    names = list(models)
    nll = dict.fromkeys(names, 0.0)
    agree = dict.fromkeys(names, 0)
    kl = dict.fromkeys(names, 0.0)
    count = 0
    for batch in _batches(windows, batch_size):
        targets = batch[:, score_from + 1:]
        ref_logp = ref_top = None
        if reference is not None:  # the reference first, so every other model compares to it at once
            ref_logp = F.log_softmax(logits_of(models[reference], batch)[:, score_from:-1], dim=-1)
            ref_top = ref_logp.argmax(-1)
        for name in names:
            if name == reference:
                logp = ref_logp
            else:
                logp = F.log_softmax(logits_of(models[name], batch)[:, score_from:-1], dim=-1)
            tgt = targets.to(logp.device)
            nll[name] += -logp.gather(-1, tgt.unsqueeze(-1)).sum().item()
            if ref_logp is not None and name != reference:
                agree[name] += (logp.argmax(-1) == ref_top.to(logp.device)).sum().item()
                ref = ref_logp.to(logp.device)
                kl[name] += (ref.exp() * (ref - logp)).sum().item()
            del logp
        count += targets.numel()
        if on_batch is not None:
            on_batch(batch.shape[0])
    scores = []
    for name in names:
        mean = nll[name] / count
        compared = reference is not None and name != reference
        scores.append(TextScore(name, count, mean, math.exp(mean),
                                agree[name] / count if compared else None,
                                kl[name] / count if compared else None))
    return scores


def perplexity(model: torch.nn.Module, windows: torch.Tensor, batch_size: int = 4) -> float:
    """exp(mean next-token NLL) of one model over `windows` [N, T]."""
    return compare_models({"model": model}, windows, batch_size=batch_size)[0].perplexity
