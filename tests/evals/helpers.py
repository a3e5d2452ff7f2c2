"""Test doubles for the eval suite: a small real tokenizer and a model that copies perfectly."""
from __future__ import annotations

from types import SimpleNamespace

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from hybridize.evals import recall

_tokenizer = None


def bpe_tokenizer(vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained here on the recall prompts plus English words: real subword
    tokenisation (multi-token numbers, whole-word tokens), built offline in well under a second."""
    global _tokenizer
    if _tokenizer is None:
        words = ("apple river cloud stone bread music garden window paper light water table chair green "
                 "yellow blue sky sun grass house market forest planet silver orange winter summer").split()
        text = [recall.FILLER, recall.PASSKEY_INTRO, recall.PASSKEY_QUESTION, recall.MQAR_INTRO, recall.MQAR_QUESTION,
                recall.COPY_INTRO, recall.COPY_QUESTION, "The pass key is 12345. Remember it."] + \
               [" ".join(words)] * 20
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<eos>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tk.train_from_iterator(text, trainer)
        _tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<eos>")
    return _tokenizer


class CopyModel(torch.nn.Module):
    """Predicts, at every position, the token that followed the longest earlier match of the current
    suffix (ties: the most recent): an ideal induction head. Deterministic, no weights."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, input_ids: torch.Tensor, **_):
        B, T = input_ids.shape
        logits = torch.zeros(B, T, self.vocab_size)
        for b in range(B):
            ids = input_ids[b]
            same = ids[:, None] == ids[None, :]  # same[t, j]
            run = torch.zeros(T, dtype=torch.long)  # match length ending at (t, j) for j < t
            for t in range(1, T):
                prev = torch.zeros(T, dtype=torch.long)
                prev[1:t] = run[:t - 1]
                run = torch.where(same[t, :], prev + 1, 0)
                run[t:] = 0
                if run.max() > 0:
                    # longest match, most recent on ties; j + 1 <= t is its continuation
                    j = int((run * T + torch.arange(T)).argmax())
                    logits[b, t, ids[j + 1]] = 10.0
        return SimpleNamespace(logits=logits)
