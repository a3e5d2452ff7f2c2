"""Perplexity vs context length: scores the tail of each window, skips lengths the text cannot fill."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hybridize.data import Document, token_windows
from hybridize.evals.context import perplexity_vs_context, plot_context
from tests.conftest import VOCAB, tiny_model, tiny_tokenizer


def docs():
    rng = torch.Generator().manual_seed(1)
    return [Document(f"d{i}", " ".join(f"w{int(t)}" for t in torch.randint(3, VOCAB, (150,), generator=rng)))
            for i in range(4)]


def test_tail_perplexity_per_context(tmp_path):
    model, tok = tiny_model("llama-gqa"), tiny_tokenizer()
    points = perplexity_vs_context({"m": model}, tok, docs, [32, 64, 1024], tokens_per_context=256, tail=16)
    assert [p.context for p in points] == [32, 64]  # 1024 > the ~600 tokens of text: skipped
    windows = token_windows(tok, docs(), 64, 256)
    assert points[1].windows == windows.shape[0] == 4
    with torch.no_grad():
        logits = model(input_ids=windows).logits[:, -17:-1].float()
    nll = F.cross_entropy(logits.reshape(-1, VOCAB), windows[:, -16:].reshape(-1))
    assert points[1].scored_tokens == 4 * 16
    assert points[1].perplexity["m"] == pytest.approx(nll.exp().item(), rel=1e-5)
    plot_context(points, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="longer than the scored tail"):
        perplexity_vs_context({"m": model}, tok, docs, [16], tail=16)
