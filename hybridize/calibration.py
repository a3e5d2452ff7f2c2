"""Calibration text for conversion: real prose and code that every Python installation carries."""
from __future__ import annotations

import os

import torch

# Modules present in every CPython 3.10+ with docstrings, comments and code: stable across versions
# as far as the first few thousand characters go, and never a download.
STDLIB_FILES = ("textwrap.py", "json/decoder.py", "string.py", "fractions.py", "difflib.py", "calendar.py")


def calibration_text(max_chars: int = 40_000) -> str:
    root = os.path.dirname(os.__file__)
    parts, total = [], 0
    for name in STDLIB_FILES:
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                parts.append(f.read())
            total += len(parts[-1])
        if total >= max_chars:
            break
    return "\n\n".join(parts)[:max_chars]


def calibration_ids(tokenizer, num_tokens: int = 512, rows: int = 2) -> torch.Tensor | None:
    """[rows, num_tokens // rows] token ids of calibration text (None when num_tokens is 0)."""
    if num_tokens <= 0:
        return None
    ids = tokenizer(calibration_text(), return_tensors="pt").input_ids[0]
    per_row = min(num_tokens // rows, ids.numel() // rows)
    return ids[: rows * per_row].view(rows, per_row)
