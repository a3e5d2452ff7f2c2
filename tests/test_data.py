"""hybridize.data: document reading, the deterministic split, and token windows."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import char_tokenizer
from hybridize.data import DataError, Document, in_heldout, iter_documents, packed_windows, token_windows
from hybridize.errors import UserError


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "a.txt").write_text("alpha text")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# beta")
    (tmp_path / "sub" / "c.py").write_text("print('gamma')\n")
    (tmp_path / "pkg.dist-info").mkdir()
    (tmp_path / "pkg.dist-info" / "METADATA").write_text("Name: pkg\n\nA package.")
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    rows = [{"text": f"row {i}"} for i in range(5)] + [{"text": ""}]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return tmp_path


def test_directory_reads_every_supported_file(corpus):
    docs = {d.name: d.text for d in iter_documents(corpus, split="all")}
    assert docs["a.txt"] == "alpha text"
    assert docs["sub/b.md"] == "# beta"
    assert docs["sub/c.py"] == "print('gamma')\n"
    assert docs["pkg.dist-info/METADATA"].startswith("Name: pkg")
    assert [docs[f"rows.jsonl#{i}"] for i in range(5)] == [f"row {i}" for i in range(5)]
    assert "rows.jsonl#5" not in docs  # empty text skipped
    assert not any("skip.bin" in n for n in docs)


def test_glob_list_and_parquet(corpus):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"body": ["p0", "p1"]}), corpus / "t.parquet")
    docs = list(iter_documents([str(corpus / "sub" / "*.md"), corpus / "t.parquet"], split="all", text_column="body"))
    assert [d.text for d in docs] == ["# beta", "p0", "p1"]
    assert docs[0].name == "b.md"  # relative to the pattern's fixed part: the split is location-independent
    assert [d.name for d in iter_documents(f"{corpus}/**/*.md", split="all")] == ["sub/b.md"]
    with pytest.raises(DataError, match="--text-column"):
        list(iter_documents(corpus / "t.parquet", split="all"))


def test_split_is_a_deterministic_partition():
    names = [f"doc{i}" for i in range(2000)]
    docs = [Document(n, "x") for n in names]
    held = [d.name for d in docs if in_heldout(d.name, 0.1)]
    assert 150 < len(held) < 250  # about 10%
    assert held == [n for n in names if in_heldout(n, 0.1)]  # same answer every time
    assert set(held) != {n for n in names if in_heldout(n, 0.1, seed=1)}  # the seed matters


def test_train_and_heldout_cover_all_without_overlap():
    train = {d.name for d in iter_documents("stdlib", split="train")}
    held = {d.name for d in iter_documents("stdlib", split="heldout")}
    every = [d.name for d in iter_documents("stdlib", split="all")]
    assert train and held and not train & held
    assert train | held == set(every) and len(every) == len(set(every))
    assert all(n.startswith("stdlib/") and n.endswith(".py") and "/test/" not in n for n in every)


def test_bad_input_is_a_user_error(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist"):
        iter_documents(tmp_path / "missing.txt")
    with pytest.raises(UserError, match="split"):
        iter_documents("stdlib", split="validation")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(UserError, match="unsupported file type"):
        list(iter_documents(tmp_path / "x.csv"))
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(UserError, match="bad.jsonl:1"):
        list(iter_documents(tmp_path / "bad.jsonl", split="all"))
    import datasets
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="pass local text"):
        list(iter_documents("someone/no-such-dataset"))


def test_token_windows_cut_the_joined_stream():
    tok = char_tokenizer()
    docs = [Document("a", "abcdef"), Document("b", "ghij")]
    eos = tok.eos_token_id
    stream = tok("abcdef", add_special_tokens=False)["input_ids"] + [eos] + tok("ghij", add_special_tokens=False)["input_ids"] + [eos]
    w = token_windows(tok, docs, seq_len=4)
    assert w.tolist() == [stream[0:4], stream[4:8], stream[8:12]]
    assert token_windows(tok, docs, seq_len=4, max_tokens=9).shape == (2, 4)  # whole windows only
    ids, pos = packed_windows(tok, docs, seq_len=4)
    assert torch.equal(ids, w)
    # window 2 = "ef<eos>g": starts mid-document (positions from 0), then document b starts at 0; window 3 continues b, from 0 again
    assert pos.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0], [0, 1, 2, 3]]
    with pytest.raises(UserError, match="fewer than"):
        token_windows(tok, docs, seq_len=100)
    with pytest.raises(UserError, match="max-tokens"):
        token_windows(tok, docs, seq_len=4, max_tokens=3)
