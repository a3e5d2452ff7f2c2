"""Stage 2 losses: the student's next-token distribution against the teacher's.

Logits of a large vocabulary are the biggest tensors of a step (4K tokens x 128K vocab x 4 bytes =
2 GiB in float32 per sequence), so the float32 work runs over chunks of tokens under activation
checkpointing: only the bf16 logits stay alive for the backward pass.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE = -100


def _kl_chunk(student: torch.Tensor, teacher: torch.Tensor, temperature: float, top_k: int) -> torch.Tensor:
    """Sum over tokens of KL(teacher || student) at `temperature`, both given as raw logits [N, V]."""
    s = F.log_softmax(student.float() / temperature, dim=-1)
    t = teacher.float() / temperature
    if top_k:
        # Sparse targets: the teacher's top-k logits renormalised; the student keeps its full softmax.
        values, index = t.topk(top_k, dim=-1)
        t_logp = F.log_softmax(values, dim=-1)
        return (t_logp.exp() * (t_logp - s.gather(-1, index))).sum()
    t_logp = F.log_softmax(t, dim=-1)
    return (t_logp.exp() * (t_logp - s)).sum()


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float = 1.0,
            top_k: int = 0, mask: torch.Tensor | None = None, chunk_tokens: int = 2048) -> torch.Tensor:
    """Mean over (unmasked) tokens of forward KL(teacher || student), times temperature^2 (so the
    gradient scale does not depend on the temperature, as in Hinton et al.)."""
    V = student_logits.shape[-1]
    s, t = student_logits.reshape(-1, V), teacher_logits.reshape(-1, V)
    if mask is not None:
        keep = mask.reshape(-1).nonzero().squeeze(-1)
        s, t = s.index_select(0, keep), t.index_select(0, keep)
    total = s.new_zeros((), dtype=torch.float32)
    for start in range(0, s.shape[0], chunk_tokens):
        part = slice(start, start + chunk_tokens)
        if s.requires_grad:
            total = total + checkpoint(_kl_chunk, s[part], t[part], temperature, top_k, use_reentrant=False)
        else:
            total = total + _kl_chunk(s[part], t[part], temperature, top_k)
    return total * temperature**2 / max(s.shape[0], 1)


def next_token_labels(input_ids: torch.Tensor, position_ids: torch.Tensor | None) -> torch.Tensor:
    """Labels for position t = token t+1 of the same document; IGNORE across document starts and at
    the last position."""
    labels = torch.full_like(input_ids, IGNORE)
    labels[:, :-1] = input_ids[:, 1:]
    if position_ids is not None:
        labels[:, :-1][position_ids[:, 1:] == 0] = IGNORE
    return labels


def ce_loss(logits: torch.Tensor, labels: torch.Tensor, chunk_tokens: int = 2048) -> torch.Tensor:
    """Mean cross-entropy over labelled tokens (float32 by chunks, like kd_loss)."""
    V = logits.shape[-1]
    x, y = logits.reshape(-1, V), labels.reshape(-1)
    total = x.new_zeros((), dtype=torch.float32)
    for start in range(0, x.shape[0], chunk_tokens):
        part = slice(start, start + chunk_tokens)
        fn = lambda a, b: F.cross_entropy(a.float(), b, ignore_index=IGNORE, reduction="sum")  # noqa: E731
        total = total + (checkpoint(fn, x[part], y[part], use_reentrant=False) if x.requires_grad else fn(x[part], y[part]))
    return total / (y != IGNORE).sum().clamp(min=1)
