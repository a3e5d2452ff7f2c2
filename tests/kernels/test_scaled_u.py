"""Round 15's u as a _common.Scaled, on the CPU under TRITON_INTERPRET=1 (tests/kernels/conftest.py): the forward's
solve kernel stores u = T diag(beta) v in fp16 over a power of two per token, head and block of U_BLOCK value columns
(SPLIT_CONFIG["scaled_u"]), and the scan, and the output kernel's overflow fallback, multiply the scales back.

Each against float64 over the very same operands, at magnitudes where plain fp16 would overflow (u ~ 1e6) or flush
to zero (u ~ 1e-9): the scales keep fp16's 11 significant bits either way.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from hybridize.kernels import chunk_prep as prep_mod  # noqa: E402
from hybridize.kernels import chunk_prep_split as sp  # noqa: E402
from hybridize.kernels import chunk_scan as scan_mod  # noqa: E402
from hybridize.kernels import gated_delta_rule  # noqa: E402
from hybridize.kernels._common import CHUNK, U_BLOCK, Scaled, make_layout  # noqa: E402
from hybridize.modeling.gated_delta import recurrent_gated_delta_rule  # noqa: E402

from .test_gated_delta_kernels import inproc, make_inputs, rel  # noqa: E402

T_, H, K, V = 130, 2, 64, 96  # two full chunks and a partial one; two blocks of u's scales, the second partial


def prep_inputs(seed: int = 3):
    """q, k (unit rows), v, beta (bf16), slow scalar gates."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    k = F.normalize(r(1, T_, H, K), dim=-1).bfloat16()
    q = F.normalize(r(1, T_, H, K), dim=-1).bfloat16()
    v = r(1, T_, H, V).bfloat16()
    g = -0.05 * torch.rand(1, T_, H, generator=gen)
    beta = torch.sigmoid(r(1, T_, H)).bfloat16()
    return q, k, v, g, beta


def u_ref(v, beta, Tm):
    """u = T diag(beta) v per chunk, in float64 from the prep's own T."""
    u = torch.zeros(v.shape, dtype=torch.float64)
    for c0 in range(0, T_, CHUNK):
        c = slice(c0, min(c0 + CHUNK, T_))
        n = c.stop - c.start
        Tc = Tm[0, c, :, :n].double().permute(1, 0, 2)  # [H, n, n]
        u[0, c] = (Tc @ (beta[0, c].double().T[:, :, None] * v[0, c].double().permute(1, 0, 2))).permute(1, 0, 2)
    return u


def unscaled(u: Scaled) -> torch.Tensor:
    return u.values.double() * u.scale.double().repeat_interleave(U_BLOCK, -1)[..., :u.values.shape[-1]]


@inproc
@pytest.mark.parametrize("factor", [1.0, 2.0 ** 20, 2.0 ** -30], ids=["v", "v x 2^20", "v x 2^-30"])
def test_scaled_u_matches_float64(factor):
    """u as a Scaled against float64 from the same T, and against the fp32 u of the backward's route: within fp16's
    rounding at any magnitude; every block's largest value in [2^14, 2^15), every scale a power of two; w as the
    fp32 route's, bit for bit (the same products)."""
    q, k, v, g, beta = prep_inputs()
    v = (v.float() * factor).bfloat16()
    layout = make_layout(1, T_, None, "cpu")
    run = lambda u16: sp.chunk_prep_split(q, k, v, g, beta, K ** -0.5, layout, torch.bfloat16,  # noqa: E731
                                          torch.float32, aqk=False, u16=u16)
    _, w, u, _, Tm, _ = run(True)
    _, w32, u32, _, _, _ = run(False)
    assert isinstance(u, Scaled) and u.values.dtype == torch.float16 and u.scale.shape == (1, T_, H, 2)
    top = torch.stack([u.values[..., :U_BLOCK].float().abs().amax(-1), u.values[..., U_BLOCK:].float().abs().amax(-1)])
    assert ((top >= 2 ** 14) & (top < 2 ** 15)).all()
    assert torch.equal(torch.exp2(torch.log2(u.scale).round()), u.scale)
    ref = u_ref(v, beta, Tm)
    assert rel(unscaled(u), ref) < 5e-4 and rel(unscaled(u), u32) < 5e-4, (rel(unscaled(u), ref), rel(u32, ref))
    assert torch.equal(w, w32)


@inproc
@pytest.mark.parametrize("channel", [False, True], ids=["gdn", "kda"])
def test_no_grad_forward_with_scaled_u(channel, monkeypatch):
    """The no-grad forward through the solve kernel (the split prep, the solve not in the scan) with u as a Scaled:
    o and the final state against the float64 recurrence and against the same forward with fp32 u; then v x 2^20
    (u far past fp16's range, held by its scales; o is linear in v without an initial state). V = 128: two blocks of
    scales, and the scan's value blocks of 16 at this size read each its own."""
    monkeypatch.setitem(prep_mod.PREP_CONFIG, "design", "split")
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "solve_min_seqs_heads", {"gdn": 10 ** 6, "kda": 10 ** 6})
    q, k, v, g, beta, h0 = make_inputs(23, 2, 150, H, 64, 128, channel, torch.bfloat16, 2, False)
    ro, rht = recurrent_gated_delta_rule(*(x.double() for x in (q, k, v, g, beta)), initial_state=h0.double(),
                                         output_final_state=True)
    outs = {}
    for on in (True, False):
        monkeypatch.setitem(sp.SPLIT_CONFIG, "scaled_u", on)
        with torch.no_grad():
            outs[on] = gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True)
    (o, ht), (o_off, ht_off) = outs[True], outs[False]
    assert rel(o, ro) < 5e-3 and rel(ht, rht) < 1e-3, (rel(o, ro), rel(ht, rht))
    assert rel(o, o_off) < 2e-3 and rel(ht, ht_off) < 1e-3, (rel(o, o_off), rel(ht, ht_off))
    monkeypatch.setitem(sp.SPLIT_CONFIG, "scaled_u", True)
    ro0, _ = recurrent_gated_delta_rule(*(x.double() for x in (q, k, v, g, beta)))
    with torch.no_grad():
        o_big = gated_delta_rule(q, k, (v.float() * 2.0 ** 20).bfloat16(), g, beta)[0]
    assert rel(o_big.double() / 2.0 ** 20, ro0) < 5e-3
