"""Training and validation rows: documents -> tokens -> packed rows with per-document positions.

Documents come from `hybridize.data.iter_documents` (files, globs, directories, Hub datasets,
"stdlib"), split into train / held-out by a hash of each document's name. Training documents are
put in a seeded order first (local corpora are listed alphabetically, so the first N tokens would
otherwise all come from a few packages), then concatenated with EOS and cut into rows of `seq_len`
whose position_ids restart at 0 at each document start: the hybrid resets its linear layers' state
there and attention layers get a block-diagonal mask. The rows are materialised once, so step s of a
run always reads the same rows: this is what makes `--resume` exact.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import DataError, Document, iter_documents, token_windows

SHUFFLE_BUFFER = 10_000  # documents held at once when a Hub dataset is streamed


@dataclass
class Rows:
    """[N, seq_len] input_ids and position_ids."""
    input_ids: torch.Tensor
    position_ids: torch.Tensor

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def tokens(self) -> int:
        return self.input_ids.numel()

    def take(self, index: torch.Tensor | slice) -> "Rows":
        return Rows(self.input_ids[index], self.position_ids[index])


def _is_local(spec) -> bool:
    if isinstance(spec, (list, tuple)):
        return all(_is_local(s) for s in spec)
    spec = os.fspath(spec)
    return spec == "stdlib" or Path(spec).expanduser().exists() or any(c in spec for c in "*?[")


def _order(name: str, seed: int) -> str:
    return hashlib.sha256(f"order:{seed}:{name}".encode()).hexdigest()


def shuffled_documents(spec, *, split: str = "train", heldout_fraction: float = 0.1, text_column: str = "text",
                       seed: int = 0) -> Iterator[Document]:
    """Documents of one split in a seeded order: a full shuffle for local text (read into memory),
    a buffered shuffle for streamed Hub datasets."""
    if _is_local(spec):
        key = tuple(spec) if isinstance(spec, (list, tuple)) else spec
        yield from _local_sorted(key, split, heldout_fraction, text_column, seed)
        return
    docs = iter_documents(spec, split=split, heldout_fraction=heldout_fraction, text_column=text_column)
    rng, buffer = random.Random(seed), []
    for doc in docs:
        buffer.append(doc)
        if len(buffer) >= SHUFFLE_BUFFER:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def pack(tokenizer, docs, *, seq_len: int, rows: int, batch_docs: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """At most `rows` rows: documents (each ended by EOS) concatenated and cut every `seq_len` tokens.
    Positions restart at 0 at each document start, and at each row start (a row sees no earlier
    tokens). Documents are tokenised in batches (the tokenizer's Rust threads) and only until
    enough tokens are in hand."""
    eos = tokenizer.eos_token_id
    need, have, pieces, batch = rows * seq_len, 0, [], []

    def flush():
        nonlocal have
        for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
            if have >= need:
                break
            piece = np.asarray(list(ids) + ([eos] if eos is not None else []), dtype=np.int64)
            if piece.size:
                pieces.append(piece)
                have += piece.size
        batch.clear()

    for doc in docs:
        batch.append(doc.text)
        if len(batch) >= batch_docs:
            flush()
            if have >= need:
                break
    if batch and have < need:
        flush()
    n = min(rows, have // seq_len)
    if n < 1:
        raise DataError(f"the text holds fewer than {seq_len} tokens: give more text or a smaller --seq-len")
    ids = np.concatenate(pieces)[: n * seq_len].reshape(n, seq_len)
    pos = np.concatenate([np.arange(p.size) for p in pieces])[: n * seq_len].reshape(n, seq_len)
    before_first_start = np.cumsum(pos == 0, axis=1) == 0  # a row that starts inside a document
    pos = pos - np.where(before_first_start, pos[:, :1], 0)
    return torch.from_numpy(ids), torch.from_numpy(pos)


@functools.lru_cache(maxsize=2)
def _local_sorted(spec, split: str, heldout_fraction: float, text_column: str, seed: int) -> tuple[Document, ...]:
    """Read once per process: a run that evaluates, then trains, or two stages run from one script,
    walk a large corpus (a whole site-packages) only once per split."""
    docs = iter_documents(list(spec) if isinstance(spec, tuple) else spec, split=split,
                          heldout_fraction=heldout_fraction, text_column=text_column)
    return tuple(sorted(docs, key=lambda d: _order(d.name, seed)))


def training_rows(tokenizer, spec, *, rows: int, seq_len: int, heldout_fraction: float = 0.1,
                  text_column: str = "text", seed: int = 0) -> Rows:
    """`rows` packed rows of the train split; a corpus that is too small is repeated (with a warning)."""
    docs = shuffled_documents(spec, split="train", heldout_fraction=heldout_fraction,
                              text_column=text_column, seed=seed)
    try:
        ids, pos = pack(tokenizer, docs, seq_len=seq_len, rows=rows)
    except DataError as err:
        raise DataError(f"training data: {err}") from err
    if len(ids) < rows:
        warnings.warn(f"the training split holds {len(ids) * seq_len:,} tokens, fewer than the {rows * seq_len:,} "
                      f"asked for: it is repeated {-(-rows // len(ids))} times", stacklevel=2)
        repeat = -(-rows // len(ids))
        gen = torch.Generator().manual_seed(seed)
        order = torch.cat([torch.randperm(len(ids), generator=gen) for _ in range(repeat)])[:rows]
        ids, pos = ids[order], pos[order]
    return Rows(ids, pos)


def cached_training_rows(cache_dir: Path, tokenizer, spec, *, rows: int, seq_len: int, heldout_fraction: float = 0.1,
                         text_column: str = "text", seed: int = 0, build: bool = True) -> Rows | None:
    """`training_rows`, kept in `cache_dir` (the run directory) under a key of every argument, so a
    resumed run reads its rows back in a second instead of re-tokenising the corpus, and reads the
    same rows even if the files changed since. `build=False` only reads (processes other than the
    first wait for it to write)."""
    from safetensors.torch import load_file, save_file
    key = json.dumps([str(spec) if not isinstance(spec, (list, tuple)) else [str(x) for x in spec], rows, seq_len,
                      heldout_fraction, text_column, seed, getattr(tokenizer, "name_or_path", ""), len(tokenizer)])
    path = Path(cache_dir) / f"rows-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"
    if path.is_file():
        t = load_file(path)
        return Rows(t["input_ids"], t["position_ids"])
    if not build:
        return None
    out = training_rows(tokenizer, spec, rows=rows, seq_len=seq_len, heldout_fraction=heldout_fraction,
                        text_column=text_column, seed=seed)
    tmp = path.with_suffix(".tmp")
    save_file({"input_ids": out.input_ids.contiguous(), "position_ids": out.position_ids.contiguous()}, tmp)
    os.replace(tmp, path)  # atomic: a run killed while writing leaves no half file under the real name
    return out


def heldout_rows(tokenizer, spec, *, tokens: int, seq_len: int, heldout_fraction: float = 0.1,
                 text_column: str = "text", seed: int = 0) -> Rows:
    """Validation windows from the held-out split, each an independent sequence (positions 0..L-1,
    documents joined by EOS), the usual perplexity set-up and the same as `hybridize eval`'s."""
    docs = shuffled_documents(spec, split="heldout", heldout_fraction=heldout_fraction,
                              text_column=text_column, seed=seed)
    try:
        ids = token_windows(tokenizer, docs, seq_len, max_tokens=max(tokens, seq_len))
    except DataError as err:
        raise DataError(f"held-out data: {err}; raise --heldout-fraction or give more text") from err
    return Rows(ids, torch.arange(seq_len).expand_as(ids).contiguous())


def micro_batch(rows: Rows, *, step: int, micro: int, rank: int, world: int, batch_size: int,
                grad_accum: int) -> Rows:
    """The rows of one process's micro-batch: step s consumes batch_size * grad_accum * world rows
    in order, so the data position is a pure function of the step (exact resume)."""
    per_step = batch_size * grad_accum * world
    start = step * per_step + (micro * world + rank) * batch_size
    return rows.take(slice(start, start + batch_size))
