"""Exact recall, where linear attention is known to fail: passkey retrieval, multi-query associative
recall (MQAR) and span copying.

Every task is built from the model's own tokenizer, seeded, offline. A sample is a token sequence
with one or more answer spans; a query counts as correct when the model's greedy prediction matches
every answer token given the prompt (teacher forcing: one forward per sample, and exactly the same
verdict as greedy generation of the answer, since each answer token is checked given a correct prefix).

Sequences are assembled from separately tokenised pieces, so the answer's tokens are literally the
tokens the context holds: a model that copies perfectly can score 100%, and a failure is the model's.
"""
from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from .perplexity import logits_of

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
PASSKEY_INTRO = "There is a pass key hidden inside a lot of irrelevant text. Find it and memorize it.\n"
PASSKEY_QUESTION = "\nWhat is the pass key? The pass key is"
MQAR_INTRO = "Memorize the word paired with each word.\n"
MQAR_QUESTION = "\nNow recall the paired words.\n"
COPY_INTRO = "Read this list of words.\nList:"
COPY_QUESTION = "\nNow repeat the list exactly.\nList:"
_WORD = re.compile(r"^ ?[A-Za-z][a-z]{1,11}$")


@dataclass
class Sample:
    task: str  # passkey | mqar | copy
    ids: list[int]
    answers: list[tuple[int, int]]  # [start, end) of each answer span in `ids`
    length: int  # the length bucket asked for (the sequence may be a few tokens shorter)
    depth: float | None = None  # passkey: where the needle sits (0 = start, 1 = end)
    size: int | None = None  # mqar: number of pairs; copy: span length


class Pieces:
    """Tokenise text pieces without special tokens, and pick whole-word tokens for synthetic tasks."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._words: list[int] | None = None

    def __call__(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def words(self) -> list[int]:
        """Ids of tokens that are a whole word on their own (" apple" or "apple") and that tokenise back
        to exactly themselves: keys, values and spans are drawn from these."""
        if self._words is None:
            tok = self.tokenizer
            ids = [i for i in range(len(tok)) if i not in set(tok.all_special_ids)]
            texts = tok.batch_decode([[i] for i in ids])
            words = [(i, text) for i, text in zip(ids, texts) if _WORD.match(text)]
            # A large vocabulary has plenty of space-led whole words (" apple"): prefer them, they read as
            # text to a language model; a small one (tests) may only have fragments.
            spaced = [(i, t) for i, t in words if t.startswith(" ") and len(t) >= 4]
            words = spaced if len(spaced) >= 256 else words
            self._words = [i for i, text in words if self(text) == [i]]
        return self._words

    def sample_words(self, rng: random.Random, n: int, unique: bool = True) -> list[int]:
        pool = self.words()
        if unique and len(pool) < n:
            raise ValueError(f"the tokenizer has only {len(pool)} whole-word tokens; the task needs {n}")
        if not pool:
            raise ValueError("the tokenizer has no whole-word tokens to build recall tasks from")
        return rng.sample(pool, n) if unique else [rng.choice(pool) for _ in range(n)]


def passkey_sample(pieces: Pieces, length: int, depth: float, rng: random.Random, digits: int = 5) -> Sample:
    """Filler text of about `length` tokens with 'The pass key is NNNNN.' at `depth`, then the question."""
    key = str(rng.randrange(10 ** (digits - 1), 10 ** digits))
    intro, filler, question = pieces(PASSKEY_INTRO), pieces(FILLER), pieces(PASSKEY_QUESTION)
    answer = pieces(" " + key)
    needle = pieces("The pass key is") + answer + pieces(". Remember it. ") + pieces(key) + pieces(" is the pass key. ")
    budget = length - len(intro) - len(needle) - len(question) - len(answer)
    if budget < 0:
        raise ValueError(f"a passkey prompt needs at least {length - budget} tokens with this tokenizer; "
                         f"{length} is too short")
    n_fill = max(0, budget // len(filler))
    at = round(depth * n_fill)
    ids = intro + filler * at + needle + filler * (n_fill - at) + question
    start = len(ids)
    ids += answer
    return Sample("passkey", ids, [(start, len(ids))], length, depth=depth)


def mqar_sample(pieces: Pieces, num_pairs: int, num_queries: int, rng: random.Random) -> Sample:
    """`num_pairs` lines 'key: value' (single-token words), then `num_queries` of the keys again in a
    random order: each value must be recalled from the list (one forward answers every query)."""
    words = pieces.sample_words(rng, 2 * num_pairs)
    keys, values = words[:num_pairs], words[num_pairs:]
    newline, colon = pieces("\n"), pieces(":")
    ids = pieces(MQAR_INTRO)
    for k, v in zip(keys, values):
        ids += [k] + colon + [v] + newline
    ids += pieces(MQAR_QUESTION)
    answers = []
    for j in rng.sample(range(num_pairs), min(num_queries, num_pairs)):
        ids += [keys[j]] + colon
        answers.append((len(ids), len(ids) + 1))
        ids += [values[j]] + newline
    return Sample("mqar", ids, answers, len(ids), size=num_pairs)


def copy_sample(pieces: Pieces, span: int, rng: random.Random) -> Sample:
    """A list of `span` random words, then the request to repeat it: the whole list is the answer."""
    words = pieces.sample_words(rng, span, unique=len(pieces.words()) >= span)
    ids = pieces(COPY_INTRO) + words + pieces(COPY_QUESTION)
    start = len(ids)
    ids += words
    return Sample("copy", ids, [(start, len(ids))], len(ids), size=span)


@dataclass
class RecallConfig:
    lengths: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048])
    depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    passkey_samples: int = 2  # per (length, depth) cell
    mqar_pairs: list[int] = field(default_factory=lambda: [8, 32, 64])
    mqar_queries: int = 16
    copy_spans: list[int] = field(default_factory=lambda: [16, 64, 256])
    samples: int = 2  # per mqar / copy size
    seed: int = 0


def build_samples(tokenizer, config: RecallConfig) -> list[Sample]:
    """Every sample of the suite, the same for every model and run with the same seed."""
    pieces = Pieces(tokenizer)
    rng = random.Random(config.seed)
    samples = [passkey_sample(pieces, L, d, rng) for L in config.lengths for d in config.depths
               for _ in range(config.passkey_samples)]
    samples += [mqar_sample(pieces, n, config.mqar_queries, rng) for n in config.mqar_pairs for _ in range(config.samples)]
    samples += [copy_sample(pieces, n, rng) for n in config.copy_spans for _ in range(config.samples)]
    return samples


@dataclass
class SampleScore:
    correct: int  # queries answered exactly
    queries: int
    tokens_correct: int
    tokens: int


@torch.no_grad()
def score_samples(model: torch.nn.Module, samples: list[Sample], pad_id: int = 0, batch_size: int = 1,
                  on_sample: Callable[[int], None] | None = None) -> list[SampleScore]:
    """Greedy exact-match of every answer span. Batches are right-padded: causal models never look
    ahead, so padding after a sequence changes none of its predictions and needs no mask."""
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].ids))  # similar lengths batch together
    results: list[SampleScore | None] = [None] * len(samples)
    for at in range(0, len(order), batch_size):
        idx = order[at:at + batch_size]
        width = max(len(samples[i].ids) for i in idx)
        batch = torch.full((len(idx), width), pad_id, dtype=torch.long)
        for row, i in enumerate(idx):
            batch[row, :len(samples[i].ids)] = torch.tensor(samples[i].ids)
        predicted = logits_of(model, batch).argmax(-1).cpu()
        for row, i in enumerate(idx):
            s = samples[i]
            target = batch[row]
            good = tokens = queries = 0
            for start, end in s.answers:
                hit = predicted[row, start - 1:end - 1] == target[start:end]
                good += int(hit.all())
                tokens += int(hit.sum())
                queries += 1
            results[i] = SampleScore(good, queries, tokens, sum(e - b for b, e in s.answers))
        if on_sample is not None:
            on_sample(len(idx))
    return results  # type: ignore[return-value]


@dataclass
class RecallReport:
    model: str
    lengths: list[int]
    depths: list[float]
    passkey: list[list[float]]  # accuracy [depth][length]
    mqar: dict[int, float]  # pairs -> fraction of queries answered exactly
    copy: dict[int, float]  # span -> fraction of spans copied exactly
    copy_tokens: dict[int, float]  # span -> fraction of span tokens right

    @property
    def passkey_mean(self) -> float:
        cells = [a for row in self.passkey for a in row]
        return sum(cells) / len(cells) if cells else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passkey_mean"] = self.passkey_mean
        return d


def summarise(model: str, samples: list[Sample], scores: list[SampleScore], config: RecallConfig) -> RecallReport:
    def mean(pairs):
        correct = sum(c for c, _ in pairs)
        total = sum(t for _, t in pairs)
        return correct / total if total else float("nan")

    passkey = [[mean([(sc.correct, sc.queries) for s, sc in zip(samples, scores)
                      if s.task == "passkey" and s.length == L and s.depth == d]) for L in config.lengths]
               for d in config.depths]
    by = {}
    for task, key in (("mqar", "correct"), ("copy", "correct"), ("copy_tokens", "tokens")):
        name = task.split("_")[0]
        sizes = config.mqar_pairs if name == "mqar" else config.copy_spans
        by[task] = {n: mean([(sc.tokens_correct, sc.tokens) if key == "tokens" else (sc.correct, sc.queries)
                             for s, sc in zip(samples, scores) if s.task == name and s.size == n]) for n in sizes}
    return RecallReport(model, list(config.lengths), list(config.depths), passkey, by["mqar"], by["copy"],
                        by["copy_tokens"])


def run_recall(models: dict[str, torch.nn.Module], tokenizer, config: RecallConfig | None = None,
               batch_size: int = 1, on_sample: Callable[[int], None] | None = None) -> list[RecallReport]:
    """The whole suite on every model (the same samples for all)."""
    config = config or RecallConfig()
    # MQAR needs 2n distinct whole-word tokens; a small vocabulary cannot hold the largest sizes.
    pool = len(Pieces(tokenizer).words())
    config = dataclasses.replace(config, mqar_pairs=[n for n in config.mqar_pairs if 2 * n <= pool])
    samples = build_samples(tokenizer, config)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return [summarise(name, samples, score_samples(model, samples, pad, batch_size, on_sample), config)
            for name, model in models.items()]


def count_samples(config: RecallConfig) -> int:
    return (len(config.lengths) * len(config.depths) * config.passkey_samples
            + (len(config.mqar_pairs) + len(config.copy_spans)) * config.samples)


def plot_passkey(reports: list[RecallReport], path) -> None:
    """Heatmaps side by side: needle depth (rows) x context length (columns), green = found."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(reports), figsize=(1.2 + 2.6 * len(reports), 3.2), dpi=100, squeeze=False)
    for ax, rep in zip(axes[0], reports):
        grid = torch.tensor(rep.passkey)
        ax.imshow(grid.numpy(), vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        ax.set_xticks(range(len(rep.lengths)), [_short(L) for L in rep.lengths])
        ax.set_yticks(range(len(rep.depths)), [f"{d:.0%}" for d in rep.depths])
        for r in range(grid.shape[0]):
            for c in range(grid.shape[1]):
                ax.text(c, r, f"{grid[r, c]:.0%}", ha="center", va="center", fontsize=7)
        ax.set_title(f"{rep.model}: passkey", fontsize=9)
        ax.set_xlabel("context (tokens)")
    axes[0][0].set_ylabel("needle depth")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _short(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)
