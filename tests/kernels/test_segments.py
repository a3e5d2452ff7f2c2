"""The forward in segments (segments.py) against the forward over the whole sequence, on the CPU under
TRITON_INTERPRET=1 (tests/kernels/conftest.py).

Cut at chunk boundaries with the state handed on in fp32, every kernel computes the same numbers on each
segment as on the whole sequence, so the outputs and final states must be bitwise equal; the float64
recurrence checks that both are right. The segments here are one or two chunks long, with a partial last
chunk, so that a state handed on wrongly, a segment's output written at the wrong offset, or the fused L2
norm's row scale cut at the wrong tokens all show.
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from hybridize.kernels import gated_delta_rule  # noqa: E402
from hybridize.kernels import segments as seg_mod  # noqa: E402
from hybridize.kernels._common import make_layout  # noqa: E402
from hybridize.modeling.gated_delta import recurrent_gated_delta_rule  # noqa: E402

from .test_gated_delta_kernels import make_inputs, rel  # noqa: E402

T, H, K, V = 250, 2, 64, 32  # three full chunks and a partial one


def run(ins, l2, seg_chunks, monkeypatch):
    monkeypatch.setitem(seg_mod.SEGMENT_CONFIG, "chunks", seg_chunks)
    with torch.no_grad():
        return gated_delta_rule(*ins[:5], initial_state=ins[5], output_final_state=True, use_qk_l2norm=l2)


@pytest.mark.parametrize("channel,dtype,l2,seg_chunks", [
    (False, torch.bfloat16, False, 1), (False, torch.float32, True, 2), (True, torch.bfloat16, True, 1),
    (True, torch.float32, False, 2)])
def test_segments_equal_the_whole_forward(channel, dtype, l2, seg_chunks, monkeypatch):
    ins = make_inputs(3, 1, T, H, K, V, channel, dtype, 1, l2)
    o_whole, ht_whole = run(ins, l2, 0, monkeypatch)
    o_seg, ht_seg = run(ins, l2, seg_chunks, monkeypatch)
    assert torch.equal(o_seg, o_whole) and torch.equal(ht_seg, ht_whole)
    ref_o, ref_ht = recurrent_gated_delta_rule(*(x.double() for x in ins[:5]), initial_state=ins[5].double(),
                                               output_final_state=True, use_qk_l2norm=l2)
    bound = 1e-2 if dtype == torch.bfloat16 else 1e-4
    assert rel(o_seg, ref_o) < bound and rel(ht_seg, ref_ht) < bound


def test_which_forwards_are_segmented(monkeypatch):
    monkeypatch.setitem(seg_mod.SEGMENT_CONFIG, "chunks", 2)
    one = make_layout(1, 64 * 8, None, "cpu")
    assert seg_mod.segment_chunks(one, 16, keep=False) == 2
    assert seg_mod.segment_chunks(one, 16, keep=True) == 0  # a backward keeps the whole sequence's T, G, Aqk
    assert seg_mod.segment_chunks(one, seg_mod.SEGMENT_CONFIG["max_heads"] + 1, keep=False) == 0
    assert seg_mod.segment_chunks(make_layout(2, 64 * 8, None, "cpu"), 4, keep=False) == 0  # two documents
    assert seg_mod.segment_chunks(make_layout(1, 64 * 3, None, "cpu"), 4, keep=False) == 0  # under two segments
    monkeypatch.setitem(seg_mod.SEGMENT_CONFIG, "chunks", 0)
    assert seg_mod.segment_chunks(one, 16, keep=False) == 0
