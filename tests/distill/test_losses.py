"""Loss functions and schedule against independent references (torch's own kl_div / cross_entropy)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hybridize.distill.attention_transfer import normalised_mse
from hybridize.distill.kd import IGNORE, ce_loss, kd_loss, next_token_labels
from hybridize.distill.trainer import cosine_schedule


def _logits(seed, shape=(2, 9, 50)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kd_loss_matches_kl_div(temperature):
    s, t = _logits(0), _logits(1)
    ref = F.kl_div(F.log_softmax(s / temperature, -1).reshape(-1, 50), F.log_softmax(t / temperature, -1).reshape(-1, 50),
                   log_target=True, reduction="batchmean") * temperature**2
    got = kd_loss(s, t, temperature=temperature, chunk_tokens=4)  # chunks of 4 tokens: 5 chunks of 18
    assert torch.allclose(got.double(), ref, rtol=1e-5)


def test_kd_loss_gradient_through_checkpointed_chunks():
    s = _logits(0).float().requires_grad_()
    t = _logits(1).float()
    kd_loss(s, t, chunk_tokens=5).backward()
    s2 = s.detach().clone().requires_grad_()
    F.kl_div(F.log_softmax(s2, -1).reshape(-1, 50), F.log_softmax(t, -1).reshape(-1, 50), log_target=True,
             reduction="batchmean").backward()
    assert torch.allclose(s.grad, s2.grad, atol=1e-6)


def test_kd_loss_top_k_and_mask():
    s, t = _logits(2), _logits(3)
    k = 5
    values, index = t.topk(k, -1)
    p = F.softmax(values, -1)
    ref_tok = (p * (p.log() - F.log_softmax(s, -1).gather(-1, index))).sum(-1)  # [2, 9]
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 3:] = False
    got = kd_loss(s, t, top_k=k, mask=mask, chunk_tokens=3)
    assert torch.allclose(got.double(), ref_tok[mask].mean(), rtol=1e-5)
    assert kd_loss(t, t) .abs() < 1e-6  # identical distributions: zero


def test_labels_stop_at_document_starts_and_ce_matches_reference():
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    pos = torch.tensor([[0, 1, 2, 0, 1, 2]])
    labels = next_token_labels(ids, pos)
    assert labels.tolist() == [[6, 7, IGNORE, 9, 10, IGNORE]]
    logits = _logits(4, (1, 6, 12))
    ref = F.cross_entropy(logits[0], labels[0], ignore_index=IGNORE)
    assert torch.allclose(ce_loss(logits, labels, chunk_tokens=4).double(), ref, rtol=1e-6)


def test_normalised_mse():
    t = torch.randn(3, 7, 16)
    assert normalised_mse(t, t) == 0
    assert torch.isclose(normalised_mse(torch.zeros_like(t), t), torch.tensor(1.0))
    assert torch.isclose(normalised_mse(2 * t, t), torch.tensor(1.0))


def test_cosine_schedule_warms_up_then_decays_to_min():
    f = cosine_schedule(100, warmup=0.1, min_lr=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.1)
    values = [f(i) for i in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
