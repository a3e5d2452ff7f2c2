"""The forward of one long sequence in segments, its parallel kernels beside the serial scan.

With few documents x heads the scan (chunk_scan.py) is latency-bound: 16 of them run 64-128 programs,
each a chain of dependent products, on an H100's 132 multiprocessors, while the prep before it and the
output kernel after it are throughput-bound kernels that wait for it (and it for them). Cut into
segments of a few thousand tokens, the sequence's steps can overlap: the scan of segment s runs on a
high-priority stream of its own while the current stream runs the prep of segment s + 1 and the output of
segment s - 1. The state passes from segment to segment as the fp32 final state and initial state the
scan already supports, so every kernel computes exactly what it computes on the whole sequence: the
result is bitwise the same (tests/kernels/test_segments.py).

Only for the forward that keeps nothing for a backward, and one document (the segments of several
documents would not be contiguous in memory). On the CPU (the interpreter) the same steps run in order.
"""
from __future__ import annotations

import os
from contextlib import nullcontext

import torch

from ._common import CHUNK, Layout, make_layout

# chunks: chunks per segment (0: the forward is not segmented); max_heads: the most heads (x one document)
# for which it is, where the scan leaves most of the GPU idle. HYBRIDIZE_GDR_SEGMENT_CHUNKS sets chunks.
SEGMENT_CONFIG = {"chunks": int(os.environ.get("HYBRIDIZE_GDR_SEGMENT_CHUNKS", "0")), "max_heads": 16}
_STREAMS: dict = {}


def segment_chunks(layout: Layout, heads: int, keep: bool) -> int:
    """Chunks per segment for this forward, or 0 when it runs whole: segments need one document, at
    most SEGMENT_CONFIG["max_heads"] heads, at least two segments' worth of chunks, and no intermediates
    kept for a backward (keep)."""
    n = SEGMENT_CONFIG["chunks"]
    if n <= 0 or keep or layout.num_seqs != 1 or heads > SEGMENT_CONFIG["max_heads"] or layout.num_chunks < 2 * n:
        return 0
    return n


def _scan_stream(device: torch.device):
    """One high-priority stream per GPU for the scans (None on the CPU): the block scheduler then starts a
    segment's scan ahead of the parallel kernels queued beside it."""
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _STREAMS:
        _STREAMS[index] = torch.cuda.Stream(device=index, priority=-1)
    return _STREAMS[index]


def _event(stream):
    if stream is None:
        return None
    event = torch.cuda.Event()
    event.record(stream)
    return event


def run_segments(length: int, seg_chunks: int, device: torch.device, prep, scan, output, o, h0, want_final: bool):
    """Runs autograd._steps' (prep, scan, output) over segments of seg_chunks chunks of a single document of
    `length` tokens, writing o; returns the final state (None unless want_final).

    Queue order: the current stream (main) runs prep 0, then for each s: prep s+1, wait for scan s,
    output s; the scan stream runs scan s after prep s. So prep s+1 and output s-1 run beside scan s."""
    side = _scan_stream(device)
    main = torch.cuda.current_stream(device) if side is not None else None
    step = seg_chunks * CHUNK
    bounds = [(a, min(a + step, length)) for a in range(0, length, step)]
    lays = [make_layout(1, b - a, None, device) for a, b in bounds]
    kept = prep(*bounds[0], lays[0])
    ready = _event(main)
    state = h0
    for s, (a, b) in enumerate(bounds):
        last = s == len(bounds) - 1
        with torch.cuda.stream(side) if side is not None else nullcontext():
            if side is not None:
                side.wait_event(ready)
            state, scanned = scan(a, b, lays[s], kept, state, want_final or not last)
            done = _event(side)
        if not last:
            kept_next = prep(*bounds[s + 1], lays[s + 1])
            ready = _event(main)
        if side is not None:
            main.wait_event(done)
            for x in scanned[:2]:  # allocated on the scan stream, read on this one
                x.record_stream(main)
        output(a, b, lays[s], kept, scanned, out=o[:, a:b])
        if not last:
            kept = kept_next
    if side is not None and state is not None:
        state.record_stream(main)
    return state
