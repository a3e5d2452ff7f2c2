"""The recall suite separates a model that copies (100%) from a random one (chance, here ~0)."""
from __future__ import annotations

import random

import pytest

from hybridize.evals import recall
from tests.conftest import tiny_model
from tests.evals.helpers import CopyModel, bpe_tokenizer

CONFIG = recall.RecallConfig(lengths=[128, 256], depths=[0.0, 0.5, 1.0], passkey_samples=1, mqar_pairs=[4, 12],
                             mqar_queries=4, copy_spans=[6, 20], samples=2, seed=3)


def test_samples_are_seeded_and_answers_sit_in_the_context():
    tok = bpe_tokenizer()
    a, b = recall.build_samples(tok, CONFIG), recall.build_samples(tok, CONFIG)
    assert [s.ids for s in a] == [s.ids for s in b]
    pieces = recall.Pieces(tok)
    for s in a:
        for start, end in s.answers:
            answer = s.ids[start:end]
            context = s.ids[:start]
            assert any(context[i:i + len(answer)] == answer for i in range(len(context))), s.task
        if s.task == "passkey":
            assert s.length - len(pieces(recall.FILLER)) - 10 <= len(s.ids) <= s.length
            assert tok.decode(s.ids[s.answers[0][0]:]).strip().isdigit()
    # deeper needles sit later in the text
    cells = [s for s in a if s.task == "passkey" and s.length == 256]
    needle = pieces("The pass key is")
    where = [next(i for i in range(len(s.ids)) if s.ids[i:i + len(needle)] == needle) for s in cells]
    assert where == sorted(where) and where[0] < where[-1]


def test_copying_model_scores_everything():
    tok = bpe_tokenizer()
    [report] = recall.run_recall({"copy": CopyModel(len(tok))}, tok, CONFIG, batch_size=2)
    assert report.passkey == [[1.0, 1.0]] * 3
    assert report.mqar == {4: 1.0, 12: 1.0}
    assert report.copy == {6: 1.0, 20: 1.0} and report.copy_tokens == {6: 1.0, 20: 1.0}


def test_random_model_is_near_chance(tmp_path):
    tok = bpe_tokenizer()
    random_model = tiny_model("llama-gqa", vocab_size=len(tok))
    reports = recall.run_recall({"copy": CopyModel(len(tok)), "random": random_model}, tok, CONFIG)
    rand = reports[1]
    # chance of guessing an answer token from the whole vocabulary is 1/384; allow generous noise
    assert rand.passkey_mean == 0.0
    assert all(v <= 0.25 for v in rand.mqar.values())  # 16 queries: at most a lucky few
    assert all(v <= 0.1 for v in rand.copy_tokens.values())
    recall.plot_passkey(reports, tmp_path / "passkey.png")
    data = (tmp_path / "passkey.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000


def test_small_vocabulary_skips_mqar_sizes_it_cannot_build():
    tok = bpe_tokenizer()
    pool = len(recall.Pieces(tok).words())
    config = recall.RecallConfig(lengths=[128], depths=[0.5], passkey_samples=1, mqar_pairs=[2, pool], copy_spans=[4],
                                 samples=1)
    [report] = recall.run_recall({"copy": CopyModel(len(tok))}, tok, config)
    assert list(report.mqar) == [2]
    with pytest.raises(ValueError, match="whole-word tokens"):
        recall.mqar_sample(recall.Pieces(tok), pool, 1, random.Random(0))
    with pytest.raises(ValueError, match="too short"):
        recall.passkey_sample(recall.Pieces(tok), 40, 0.5, random.Random(0))
