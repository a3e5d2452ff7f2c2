"""The prep's last kernel and the scan side by side on the GPU (round 17).

At 16 documents x heads the scan runs one program per (document, head, 16 value columns): 128 programs on
132 multiprocessors, each walking its chunks one after another, latency-bound. The prep's last kernel
before it (the pairs kernel, or the solve kernel where the scan does not fold the solve in) is parallel over
chunks but used to finish before the scan started. Here the two run at once:

* the producer (that last prep kernel) runs its programs chunk-major (program = chunk * H + head) and, after
  each (chunk, head), adds one to a counter per (head, segment of SEG chunks) with release semantics
  (signal_chunk);
* the scan runs on a high-priority side stream that waits only for the kernels before the producer; before
  each segment of its chunks it spins on that segment's counter with acquire semantics (wait_segment), then
  walks the segment's chunks in a loop without a wait inside, which Triton still software-pipelines (a loop
  with a spin inside is not pipelined).

No deadlock: the producer never waits, and the scan takes this path only with fewer programs than the GPU has
multiprocessors (use_overlap), so at least one multiprocessor holds no scan program and the producer's
programs always find room. Under CUDA_LAUNCH_BLOCKING or any serialisation the producer, launched first,
simply finishes first. The values are those of the sequential kernels, bit for bit: the same programs compute
the same tiles; only when they run changes (tests/kernels/test_overlap.py on the CPU, kernels_correctness.py
on the H100).

What it saves shows in the GPU's time for the whole forward (CUDA-graph replays, benchmarks/kernel_graphs.py),
not in the sum of kernel times, which counts overlapped kernels twice.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

# mode: "auto" (default; on CUDA where use_overlap allows), "0" off, "1" also on the CPU (flags only, no
# streams: the interpreter runs the producer to the end first; for tests). seg: chunks per counter.
OVERLAP_CONFIG = {"mode": os.environ.get("HYBRIDIZE_GDR_OVERLAP", "auto"),
                  "seg": int(os.environ.get("HYBRIDIZE_GDR_OVERLAP_SEG", "8"))}


@triton.jit
def producer_ids(H, SIGNAL: tl.constexpr):
    """(chunk, head) of this program: chunk-major over a 1-D grid with SIGNAL (the scan needs chunks in
    order), else the grid's (chunk, head)."""
    if SIGNAL:
        pid = tl.program_id(0)
        return pid // H, pid % H
    else:
        return tl.program_id(0), tl.program_id(1)


@triton.jit
def signal_chunk(flags, i_c, i_h, NSEG, SEG: tl.constexpr):
    """(chunk i_c, head i_h) is written: every thread's stores first (the barrier), then one release add."""
    tl.debug_barrier()
    tl.atomic_add(flags + i_h * NSEG + i_c // SEG, 1, sem="release", scope="gpu")


@triton.jit
def wait_segment(flags, i_h, s, NSEG, NC, SEG: tl.constexpr):
    """Spins until every chunk of segment s (of NC chunks in all) is written for head i_h."""
    target = tl.minimum(SEG, NC - s * SEG)
    while tl.atomic_add(flags + i_h * NSEG + s, 0, sem="acquire", scope="gpu") < target:
        pass


@dataclass
class Overlap:
    """One forward's counters and streams. flags: int32 [H, nseg], zeroed; event: recorded on the main stream
    just before the producer's launch (fork), the side stream's only dependency; stream None on the CPU."""

    flags: torch.Tensor
    nseg: int
    seg: int
    num_chunks: int
    stream: torch.cuda.Stream | None = None
    event: torch.cuda.Event | None = None

    def fork(self) -> None:
        """Called by the prep right before its last (producer) launch."""
        if self.stream is not None:
            self.event = torch.cuda.Event()
            self.event.record()

    def producer_args(self) -> dict:
        return {"flags": self.flags, "NSEG": self.nseg, "SEG": self.seg, "SIGNAL": True}

    def consumer_args(self) -> dict:
        return {"flags": self.flags, "NSEG": self.nseg, "NC": self.num_chunks, "SEG": self.seg, "WAIT": True}


def no_overlap_args(dummy: torch.Tensor, producer: bool) -> dict:
    """The kernels' flag arguments when they do not overlap."""
    base = {"flags": dummy, "NSEG": 1, "SEG": 1}
    return {**base, "SIGNAL": False} if producer else {**base, "NC": 1, "WAIT": False}


_STREAMS: dict = {}


def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """One high-priority stream per device: the scan's programs are then dispatched ahead of the producer's
    pending ones, so the scan starts at once instead of after the producer's last wave."""
    key = torch.device(device).index if torch.device(device).index is not None else torch.cuda.current_device()
    if key not in _STREAMS:
        _STREAMS[key] = torch.cuda.Stream(device=key, priority=-1)  # torch's "high" priority
    return _STREAMS[key]


def use_overlap(device: torch.device, scan_programs: int) -> bool:
    """Whether this forward overlaps (OVERLAP_CONFIG["mode"]): on CUDA only with fewer scan programs than
    multiprocessors (the no-deadlock condition in the module docstring)."""
    mode = OVERLAP_CONFIG["mode"]
    if mode == "0" or scan_programs == 0:
        return False
    if torch.device(device).type != "cuda":
        return mode == "1"
    return scan_programs < torch.cuda.get_device_properties(device).multi_processor_count


def make_overlap(device: torch.device, heads: int, num_chunks: int) -> Overlap:
    seg = OVERLAP_CONFIG["seg"]
    nseg = triton.cdiv(num_chunks, seg)
    flags = torch.zeros(heads, nseg, device=device, dtype=torch.int32)
    stream = _side_stream(device) if torch.device(device).type == "cuda" else None
    return Overlap(flags, nseg, seg, num_chunks, stream)
