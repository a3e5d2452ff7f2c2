"""The prep's last kernel and the scan side by side (hybridize/kernels/overlap.py), on the CPU under
TRITON_INTERPRET=1 (tests/kernels/conftest.py).

The interpreter runs the producer's programs to the end before the scan's, so the waits pass at once; what these
tests pin down is everything else the overlapped path changes: the producer's chunk-major programs and counters,
the scan's walk over segments of chunks (segments of 3 chunks here, crossing document boundaries), and that the
result is the sequential path's bit for bit, forward and backward, for each producer (the solve kernel, the
scalar pairs kernel, the per-channel pairs kernel that writes the decayed keys). The float64 recurrence checks
the overlapped path itself. A counter short of its target would hang the scan here; one signalled early would
race on the GPU only, where benchmarks/kernel_graphs.py --check compares the two paths bit for bit at real shapes.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from hybridize.kernels import autograd as autograd_mod  # noqa: E402
from hybridize.kernels import gated_delta_rule  # noqa: E402
from hybridize.kernels.chunk_scan import SCAN_CONFIG  # noqa: E402
from hybridize.kernels.overlap import OVERLAP_CONFIG  # noqa: E402

from .test_gated_delta_kernels import check, inproc, make_inputs  # noqa: E402

CU = [0, 70, 75, 260]  # three documents, one shorter than a chunk; 5 chunks in all, segments of 3


def run(channel: bool, K: int, grad: bool):
    """o and the final state (and with grad, every input's gradient), bf16 inputs in three packed documents.
    With grad the forward also keeps T and Aqk for the backward (autograd.RECOMPUTE "solve")."""
    ins = make_inputs(5, 1, CU[-1], 2, K, 32, channel, torch.bfloat16, len(CU) - 1, False)
    xs = [x.clone().requires_grad_(grad) for x in ins]
    o, ht = gated_delta_rule(*xs[:5], initial_state=xs[5], output_final_state=True,
                             cu_seqlens=torch.tensor(CU, dtype=torch.int32))
    if not grad:
        return [o, ht]
    (o.float().square().sum() + ht.square().sum()).backward()
    return [o.detach(), ht.detach()] + [x.grad for x in xs]


@inproc
@pytest.mark.parametrize("case", ["gdn-solve-kernel", "gdn-pairs", "kda-pairs"])
def test_overlap_matches_sequential_bitwise(case, monkeypatch):
    """The producer is the solve kernel (GDN below 32 documents x heads), the scalar pairs kernel (GDN where
    the scan folds the solve in) or the per-channel one (KDA), with and without a backward to come."""
    channel, K = case.startswith("kda"), 128 if case == "gdn-solve-kernel" else 64
    if case == "gdn-pairs":  # the scan folds the solve in from 0 documents x heads
        monkeypatch.setitem(SCAN_CONFIG, "solve_min_seqs_heads", {"gdn": 0, "kda": 0})
    made = []
    make = autograd_mod.make_overlap
    monkeypatch.setattr(autograd_mod, "make_overlap", lambda *a: made.append(a) or make(*a))
    monkeypatch.setitem(OVERLAP_CONFIG, "seg", 3)
    for grad in (False, True):
        monkeypatch.setitem(OVERLAP_CONFIG, "mode", "0")
        sequential = run(channel, K, grad)
        monkeypatch.setitem(OVERLAP_CONFIG, "mode", "1")
        made.clear()
        overlapped = run(channel, K, grad)
        assert len(made) == 1, f"grad={grad}: the forward did not take the overlapped path"
        for name, a, b in zip(["o", "ht", "dq", "dk", "dv", "dg", "dbeta", "dh0"], overlapped, sequential):
            assert torch.equal(a, b), f"grad={grad}: {name} differs from the sequential path"
    # and the overlapped training forward against the float64 recurrence (output, state, every gradient)
    made.clear()
    check(7, 1, CU[-1], 2, K, 32, channel, dtype=torch.bfloat16, cu=CU)
    assert len(made) == 1


@inproc
def test_overlap_needs_fewer_scan_programs_than_multiprocessors(monkeypatch):
    """On CUDA the overlap is taken only with fewer scan programs than multiprocessors (the no-deadlock rule);
    off, never; on the CPU only when forced."""
    from hybridize.kernels import overlap

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: type("P", (), {"multi_processor_count": 132}))
    monkeypatch.setitem(OVERLAP_CONFIG, "mode", "auto")
    assert overlap.use_overlap(torch.device("cuda", 0), 128)
    assert not overlap.use_overlap(torch.device("cuda", 0), 132)
    assert not overlap.use_overlap(torch.device("cpu"), 8)
    monkeypatch.setitem(OVERLAP_CONFIG, "mode", "1")
    assert overlap.use_overlap(torch.device("cpu"), 8)
    monkeypatch.setitem(OVERLAP_CONFIG, "mode", "0")
    assert not overlap.use_overlap(torch.device("cuda", 0), 8)
