"""Text for evaluation and distillation: local files, globs, Hub datasets or Python's own stdlib.

    for doc in iter_documents("docs/**/*.md", split="heldout"):
        ...
    windows = token_windows(tokenizer, iter_documents("stdlib", split="heldout"), seq_len=512, max_tokens=16384)

A spec is a file, a directory (searched recursively), a glob, a list of those, a Hub dataset id
(`owner/name`, optionally `owner/name:config`), or "stdlib": the source files of the running Python's
standard library, always present offline (the default evaluation text).

The train/held-out split is by document *name* (a hash of seed + name), so it is the same on every
machine, for every reader, and does not depend on the order files are listed in: the distillation
helper trains on split="train" and `hybridize eval` measures on split="heldout" of the same spec.
"""
from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
import re
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError

TEXT_SUFFIXES = (".txt", ".md", ".py", ".rst")
RECORD_SUFFIXES = (".jsonl", ".parquet")
METADATA_NAME = "METADATA"  # *.dist-info/METADATA: package descriptions, a real prose corpus
SPLITS = ("train", "heldout", "all")
STDLIB = "stdlib"
# stdlib folders that are test data, vendored copies or GUI code rather than representative source.
_STDLIB_SKIP = {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__", "lib2to3",
                "turtledemo", "ensurepip", "tkinter"}


class DataError(UserError):
    """Text that cannot be found or read; the message says how to provide it."""


class NotEnoughText(DataError):
    """The text holds fewer tokens than one window."""


@dataclass(frozen=True)
class Document:
    name: str  # stable identifier: relative path, path#row, or dataset#row; decides the split
    text: str


def in_heldout(name: str, heldout_fraction: float, seed: int = 0) -> bool:
    """Whether a document belongs to the held-out split: a hash of (seed, name), uniform in [0, 1)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < heldout_fraction


def _readable(path: Path) -> bool:
    return path.is_file() and (path.suffix in TEXT_SUFFIXES + RECORD_SUFFIXES or path.name == METADATA_NAME)


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _file_documents(path: Path, name: str, text_column: str) -> Iterator[Document]:
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for row, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{row + 1} is not valid JSON ({err.msg}): fix the line or remove it") from err
                yield Document(f"{name}#{row}", _column(record, text_column, path))
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq
        table = pq.read_table(path)
        if text_column not in table.column_names:
            raise DataError(f"{path} has no column {text_column!r} (columns: {', '.join(table.column_names)}): "
                            "pass --text-column NAME")
        for row, text in enumerate(table.column(text_column).to_pylist()):
            yield Document(f"{name}#{row}", text or "")
    else:
        yield Document(name, _read_text(path))


def _column(record: dict, text_column: str, where) -> str:
    if not isinstance(record, dict) or text_column not in record:
        keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
        raise DataError(f"{where}: a record has no field {text_column!r} (it has: {keys}): pass --text-column NAME")
    return str(record[text_column] or "")


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if _readable(p))


def stdlib_files() -> list[tuple[str, Path]]:
    """(name, path) of the stdlib's own .py files, in a machine-independent order.

    Names are relative to the stdlib root ("stdlib/json/decoder.py") so the split does not depend on
    where Python is installed; the order is a seeded hash of the name, so the first N tokens are a
    spread sample of the library rather than whatever sorts first (abc.py, aifc.py, ...)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _STDLIB_SKIP and not d.startswith("."))
        for filename in filenames:
            if filename.endswith(".py"):
                path = Path(dirpath) / filename
                found.append((f"stdlib/{path.relative_to(root).as_posix()}", path))
    found.sort(key=lambda item: hashlib.sha256(item[0].encode()).hexdigest())
    return found


def _looks_like_path(spec: str) -> bool:
    return any(ch in spec for ch in "*?[") or spec.startswith((".", "/", "~")) or os.path.splitext(spec)[1] != ""


def _local_documents(spec: str, text_column: str) -> Iterator[Document] | None:
    """Documents of a file / directory / glob spec, or None when `spec` names nothing local."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = _files_under(path)
        if not files:
            raise DataError(f"{path} holds no readable text (.txt .md .py .rst .jsonl .parquet or METADATA files)")
        return (doc for f in files for doc in _file_documents(f, f.relative_to(path).as_posix(), text_column))
    if path.is_file():
        if not _readable(path):
            raise DataError(f"{path}: unsupported file type {path.suffix or path.name!r}; use .txt .md .py .rst "
                            ".jsonl .parquet or a METADATA file")
        return _file_documents(path, path.name, text_column)
    if any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in globlib.glob(os.path.expanduser(spec), recursive=True))
        files = [p for p in files if _readable(p)]
        if not files:
            raise DataError(f"the pattern {spec!r} matches no readable text file (.txt .md .py .rst .jsonl .parquet, METADATA)")
        # Names relative to the pattern's fixed part, so the split does not depend on where it lives.
        prefix = os.path.expanduser(re.split(r"[*?\[]", spec, maxsplit=1)[0])
        base = Path(prefix if prefix.endswith(("/", os.sep)) else os.path.dirname(prefix) or ".")
        return (doc for f in files for doc in _file_documents(f, _relative(f, base), text_column))
    if _looks_like_path(spec):
        raise DataError(f"{spec} does not exist: pass an existing file, directory or glob (or 'stdlib')")
    return None


def _hub_documents(spec: str, text_column: str) -> Iterator[Document]:
    """Rows of a Hub dataset's train split, streamed (nothing is downloaded in full)."""
    name, _, config = spec.partition(":")
    try:
        import datasets
        rows = datasets.load_dataset(name, config or None, split="train", streaming=True)
        iterator = iter(rows)
        first = next(iterator, None)
    except Exception as err:  # datasets raises many types for "not reachable" / "not found"
        raise DataError(f"could not load dataset {spec!r} from the Hugging Face Hub ({type(err).__name__}); "
                        "without network, pass local text instead: a file, directory or glob "
                        "(.txt .md .py .jsonl .parquet), or 'stdlib'") from err
    if first is None:
        return
    yield Document(f"{name}#0", _column(first, text_column, spec))
    for row, record in enumerate(iterator, start=1):
        yield Document(f"{name}#{row}", _column(record, text_column, spec))


def _all_documents(spec, text_column: str) -> Iterator[Document]:
    if isinstance(spec, (list, tuple)):
        for part in spec:
            yield from _all_documents(part, text_column)
        return
    spec = os.fspath(spec)
    if spec == STDLIB:
        for name, path in stdlib_files():
            yield Document(name, _read_text(path))
        return
    local = _local_documents(spec, text_column)
    yield from (local if local is not None else _hub_documents(spec, text_column))


def iter_documents(
    spec: str | os.PathLike | list,
    split: str = "train",
    heldout_fraction: float = 0.1,
    text_column: str = "text",
    seed: int = 0,
) -> Iterator[Document]:
    """Documents of `spec` in the given split ("train", "heldout" or "all"); empty texts are skipped.

    Raises DataError (a UserError) for a missing path, an unreadable format or an unreachable Hub."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if not 0.0 <= heldout_fraction <= 1.0:
        raise DataError(f"heldout_fraction must be between 0 and 1, got {heldout_fraction}")
    if isinstance(spec, (list, tuple)) and not spec:
        raise DataError("no text given: pass a file, directory, glob, dataset id or 'stdlib'")
    # Validate local specs now, so a typo fails at the call rather than at the first next().
    for part in spec if isinstance(spec, (list, tuple)) else [spec]:
        part = os.fspath(part)
        if part != STDLIB and _looks_like_path(part) and not Path(part).expanduser().exists() \
                and not globlib.glob(os.path.expanduser(part), recursive=True):
            raise DataError(f"{part} does not exist (or matches nothing): pass an existing file, directory or glob")
    return _split(_all_documents(spec, text_column), split, heldout_fraction, seed)


def _split(docs: Iterable[Document], split: str, fraction: float, seed: int) -> Iterator[Document]:
    for doc in docs:
        if not doc.text.strip():
            continue
        if split == "all" or in_heldout(doc.name, fraction, seed) == (split == "heldout"):
            yield doc


def _token_stream(tokenizer, docs: Iterable[Document], separator: int | None) -> Iterator[list[int]]:
    """Token ids of each document, ended by the separator (EOS) when the tokenizer has one."""
    for doc in docs:
        ids = tokenizer(doc.text, add_special_tokens=False, verbose=False)["input_ids"]
        if separator is not None:
            ids = list(ids) + [separator]
        if ids:
            yield list(ids)


def packed_windows(
    tokenizer,
    docs: Iterable[Document],
    seq_len: int,
    max_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, position_ids), both [N, seq_len]: documents concatenated (each ended by EOS) and cut
    into non-overlapping windows; position_ids restart at 0 at each document start, the format the
    hybrid model reads as packed sequences. At most `max_tokens` tokens in all (whole windows only)."""
    if seq_len < 2:
        raise DataError(f"seq_len must be at least 2 tokens, got {seq_len}")
    limit = None if max_tokens is None else max_tokens // seq_len
    if limit is not None and limit < 1:
        raise DataError(f"max_tokens {max_tokens} is smaller than one window of {seq_len}: raise --max-tokens")
    separator = tokenizer.eos_token_id
    windows: list[list[int]] = []
    positions: list[list[int]] = []
    ids_buf: list[int] = []
    pos_buf: list[int] = []
    for ids in _token_stream(tokenizer, docs, separator):
        ids_buf.extend(ids)
        pos_buf.extend(range(len(ids)))
        while len(ids_buf) >= seq_len and (limit is None or len(windows) < limit):
            windows.append(ids_buf[:seq_len])
            # A window starting mid-document starts its positions at 0 too: it sees no earlier tokens.
            first = pos_buf[:seq_len]
            base = first[0]
            positions.append([p - base if i < _first_restart(first) else p for i, p in enumerate(first)])
            del ids_buf[:seq_len], pos_buf[:seq_len]
        if limit is not None and len(windows) >= limit:
            break
    if not windows:
        raise NotEnoughText(f"the text holds fewer than {seq_len} tokens: give more text or a smaller --seq-len")
    return torch.tensor(windows, dtype=torch.long), torch.tensor(positions, dtype=torch.long)


def _first_restart(positions: list[int]) -> int:
    """Index of the first document start after index 0 (len if none)."""
    for i in range(1, len(positions)):
        if positions[i] == 0:
            return i
    return len(positions)


def token_windows(
    tokenizer,
    docs: Iterable[Document],
    seq_len: int,
    max_tokens: int | None = None,
) -> torch.Tensor:
    """[N, seq_len] token ids: documents joined by EOS and cut into non-overlapping windows, at most
    `max_tokens` tokens in all. Evaluation uses these as independent sequences (each window starts
    fresh, as a user's prompt would), the usual way perplexity is reported."""
    return packed_windows(tokenizer, docs, seq_len, max_tokens)[0]
