"""Perplexity, agreement and KL against independent computations (HF's own loss, torch's kl_div)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from hybridize.evals.perplexity import compare_models, perplexity
from hybridize.plans import Plan
from hybridize.surgery import convert
from tests.conftest import VOCAB, tiny_model


@pytest.fixture(scope="module")
def windows():
    return torch.randint(3, VOCAB, (5, 24), generator=torch.Generator().manual_seed(0))


def test_perplexity_is_exp_of_transformers_mean_loss(windows):
    model = tiny_model("llama-gqa")
    # Independent: transformers' own shifted cross-entropy, one window at a time (equal lengths, so
    # the mean of the window means is the mean over all tokens).
    with torch.no_grad():
        losses = [model(input_ids=w[None], labels=w[None]).loss.item() for w in windows]
    assert perplexity(model, windows, batch_size=2) == pytest.approx(math.exp(sum(losses) / len(losses)), rel=1e-5)


def test_a_model_agrees_with_itself(windows):
    model = tiny_model("qwen3")
    scores = compare_models({"a": model, "b": model}, windows, reference="a", batch_size=3)
    assert scores[0].agreement is None and scores[0].kl is None  # the reference
    assert scores[1].agreement == 1.0
    assert scores[1].kl == pytest.approx(0.0, abs=1e-6)
    assert scores[0].perplexity == scores[1].perplexity
    assert scores[1].tokens == windows.numel() - windows.shape[0]


def test_agreement_and_kl_match_torch(windows):
    teacher = tiny_model("llama-gqa")
    hybrid = convert(copy.deepcopy(teacher), Plan(["gdn", "full", "gdn", "full"]))
    scores = compare_models({"teacher": teacher, "hybrid": hybrid}, windows, reference="teacher", batch_size=2)
    with torch.no_grad():
        ref = F.log_softmax(teacher(input_ids=windows).logits[:, :-1].float(), -1).reshape(-1, VOCAB)
        hyp = F.log_softmax(hybrid(input_ids=windows).logits[:, :-1].float(), -1).reshape(-1, VOCAB)
    kl = F.kl_div(hyp, ref, log_target=True, reduction="sum").item() / ref.shape[0]
    agreement = (ref.argmax(-1) == hyp.argmax(-1)).float().mean().item()
    assert scores[1].kl == pytest.approx(kl, rel=1e-4)
    assert scores[1].agreement == pytest.approx(agreement)
    assert 0 < scores[1].kl and scores[1].agreement < 1  # conversion changed something


def test_score_from_counts_only_the_tail(windows):
    model = tiny_model("llama-gqa")
    tail = compare_models({"m": model}, windows, score_from=15)[0]
    with torch.no_grad():
        logits = model(input_ids=windows).logits[:, 15:-1]
    nll = F.cross_entropy(logits.reshape(-1, VOCAB).float(), windows[:, 16:].reshape(-1))
    assert tail.tokens == windows.shape[0] * 8
    assert tail.nll == pytest.approx(nll.item(), rel=1e-5)
