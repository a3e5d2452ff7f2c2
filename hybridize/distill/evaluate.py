"""Held-out figures of a run: the student's perplexity, the teacher's, how often their top-1 next
tokens agree, the KL between them, and the stage-1 loss on held-out text."""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from .attention_transfer import LayerLosses
from .data import Rows
from .teacher import TRANSFER, switches, teacher_mode


def _batches(rows: Rows, batch_size: int, rank: int, world: int):
    """(batch, counts) pairs: this process's share of `rows`, in the same number of batches on every
    process. Under FSDP every forward is a collective (each layer gathers its shards), so a process
    with fewer rows runs a forward on a placeholder batch (counts=False) instead of stopping early."""
    rounds = -(-len(rows) // (batch_size * world))
    for r in range(rounds):
        start = (r * world + rank) * batch_size
        if start < len(rows):
            yield rows.take(slice(start, start + batch_size)), True
        else:
            yield rows.take(slice(0, 1)), False


@torch.no_grad()
def evaluate(model, rows: Rows, *, batch_size: int, device, autocast=contextlib.nullcontext,
             teacher: bool = True, reduce=lambda t: t, rank: int = 0, world: int = 1) -> dict:
    """ppl, teacher_ppl (when `teacher`), top1_agreement and kl over `rows` (next-token targets).
    `reduce` sums tensors over processes under accelerate."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(5, dtype=torch.float64, device=device)  # nll_s, nll_t, agree, kl, tokens
    for batch, counts in _batches(rows, batch_size, rank, world):
        ids = batch.input_ids.to(device)
        kwargs = dict(position_ids=batch.position_ids.to(device), use_cache=False)
        with autocast():
            s_logits = model(input_ids=ids, **kwargs).logits[:, :-1].float()
            if teacher:
                with teacher_mode(model):
                    t_logits = model(input_ids=ids, **kwargs).logits[:, :-1].float()
        if not counts:
            continue
        target = ids[:, 1:]
        s_logp = F.log_softmax(s_logits, -1)
        sums[0] += -s_logp.gather(-1, target[..., None]).sum().double()
        sums[4] += target.numel()
        if teacher:
            t_logp = F.log_softmax(t_logits, -1)
            sums[1] += -t_logp.gather(-1, target[..., None]).sum().double()
            sums[2] += (s_logits.argmax(-1) == t_logits.argmax(-1)).sum().double()
            sums[3] += (t_logp.exp() * (t_logp - s_logp)).sum().double()
    sums = reduce(sums)
    n = max(float(sums[4]), 1.0)
    out = {"ppl": math.exp(float(sums[0]) / n), "tokens": int(sums[4])}
    if teacher:
        out.update(teacher_ppl=math.exp(float(sums[1]) / n), top1_agreement=float(sums[2]) / n, kl=float(sums[3]) / n)
    model.train(was_training)
    return out


@torch.no_grad()
def transfer_loss(model, rows: Rows, *, batch_size: int, device, autocast=contextlib.nullcontext,
                  reduce=lambda t: t, rank: int = 0, world: int = 1) -> float:
    """Held-out stage-1 loss: mean normalised MSE over converted layers and batches."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)
    for batch, counts in _batches(rows, batch_size, rank, world):
        losses = LayerLosses(backward=False)
        for s in switches(model):
            s.on_transfer = losses
        with autocast(), teacher_mode(model, TRANSFER):
            model(input_ids=batch.input_ids.to(device), position_ids=batch.position_ids.to(device),
                  use_cache=False, logits_to_keep=1)
        if counts:
            total += torch.stack([losses.total().double(), torch.ones((), dtype=torch.float64, device=device)])
    for s in switches(model):
        s.on_transfer = None
    model.train(was_training)
    total = reduce(total)
    return float(total[0] / total[1].clamp(min=1))
