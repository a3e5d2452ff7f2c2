"""Round 15's fp16 products in the prep, on the CPU under TRITON_INTERPRET=1 (tests/kernels/conftest.py):

* the pairs kernel's inverse T = (I + A)^-1 by block doubling with fp16 operands (SPLIT_CONFIG["inverse_f16"]),
  inverted again with tf32 products where an operand overflowed fp16 (_common.invert);
* the forward's solve kernel with fp16 products and u stored in fp16 over a power of two per row
  (_common.Scaled; SPLIT_CONFIG["solve16"]), solved again with tf32 products where a product was not finite.

Each against float64 over the very same operands. Under the interpreter the "tf32" products are plain fp32, so
the fp16 routes show their own rounding here (11 significant bits per operand), which on the GPU tf32 shares.
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
from hybridize.kernels._common import CHUNK, Scaled, make_layout  # noqa: E402
from hybridize.modeling.gated_delta import recurrent_gated_delta_rule  # noqa: E402

from .test_gated_delta_kernels import inproc, make_inputs, rel  # noqa: E402

T_, H, K, V = 130, 2, 64, 96  # two full chunks and a partial one; two blocks of u's scales, one partial


def prep_inputs(key_norm: float, seed: int = 3):
    """q, k (bf16, rows of norm key_norm), v, beta (bf16), slow scalar gates, and each chunk's T in float64
    from the same rounded k, g, beta (zero columns past a partial chunk's end, as the prep stores it).
    Keys of norm 5 make A's entries reach ~25 and T's ~1e12: fp16 operands overflow, fp32 ones do not."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    k = (F.normalize(r(1, T_, H, K), dim=-1) * key_norm).bfloat16()
    q = F.normalize(r(1, T_, H, K), dim=-1).bfloat16()
    v = r(1, T_, H, V).bfloat16()
    g = -0.05 * torch.rand(1, T_, H, generator=gen)
    beta = torch.sigmoid(r(1, T_, H)).bfloat16()
    T_ref = torch.zeros(1, T_, H, CHUNK, dtype=torch.float64)
    for c0 in range(0, T_, CHUNK):
        c = slice(c0, min(c0 + CHUNK, T_))
        n = c.stop - c.start
        kk = k[0, c].double().permute(1, 0, 2)
        G = g[0, c].double().cumsum(0).T
        A = torch.tril(beta[0, c].double().T[:, :, None] * (kk @ kk.transpose(1, 2))
                       * torch.exp(G[:, :, None] - G[:, None, :]), -1)
        T_ref[0, c, :, :n] = torch.linalg.inv(torch.eye(n, dtype=torch.float64) + A).permute(1, 0, 2)
    return q, k, v, g, beta, T_ref


def pairs_T(q, k, g, beta, f16: bool, monkeypatch):
    """G and T by the pairs kernel, with the inverse in fp16 products (then its flags too) or tf32."""
    monkeypatch.setitem(sp.SPLIT_CONFIG, "inverse_f16", f16)
    G = torch.empty(g.shape)
    Tm = torch.empty(1, T_, H, CHUNK)
    flags = torch.full((3, H), -1, dtype=torch.int32) if f16 else None
    sp.launch_pairs(q, k, g, beta, K ** -0.5, make_layout(1, T_, None, "cpu"), G, Tm, None, flags)
    return G, Tm, flags


@inproc
def test_inverse_f16_matches_float64(monkeypatch):
    """Unit keys: T within fp16's rounding of float64 (the fp32 products here land at ~1e-7), no chunk flagged. Keys
    of norm 5: T reaches 1e12, an fp16 operand overflows, the pairs kernel flags those chunks, and the prep's
    _fix_kernel inverts them again with fp32 (tf32 on the GPU) products: T as that route's, bit for bit."""
    q, k, _, g, beta, T_ref = prep_inputs(1.0)
    _, T16, flags = pairs_T(q, k, g, beta, True, monkeypatch)
    _, T32, _ = pairs_T(q, k, g, beta, False, monkeypatch)
    assert rel(T32, T_ref) < 1e-6 and 1e-6 < rel(T16, T_ref) < 5e-4, (rel(T32, T_ref), rel(T16, T_ref))
    assert torch.equal(flags, torch.zeros_like(flags))
    q, k, v, g, beta, T_ref = prep_inputs(5.0)
    assert T_ref.abs().max() > 1e10
    _, T16, flags = pairs_T(q, k, g, beta, True, monkeypatch)
    _, T32, _ = pairs_T(q, k, g, beta, False, monkeypatch)
    assert flags.any() and not torch.isfinite(T16).all()
    monkeypatch.setitem(sp.SPLIT_CONFIG, "inverse_f16", True)
    _, _, _, _, T_fixed, _ = sp.chunk_prep_split(q, k, v, g, beta, K ** -0.5, make_layout(1, T_, None, "cpu"),
                                                 torch.bfloat16, torch.float32, aqk=False, solve=False)
    assert torch.equal(T_fixed, T32) and rel(T_fixed, T_ref) < 1e-4, rel(T_fixed, T_ref)


def solve_ref(k, v, g, beta, T_ref):
    """w = T diag(beta e^G) k and u = T diag(beta) v per chunk, in float64 (G chunk-local)."""
    G = torch.cat([c.double().cumsum(1) for c in g.split(CHUNK, dim=1)], 1)
    w = torch.zeros(k.shape, dtype=torch.float64)
    u = torch.zeros(v.shape, dtype=torch.float64)
    for c0 in range(0, T_, CHUNK):
        c = slice(c0, min(c0 + CHUNK, T_))
        n = c.stop - c.start
        Tc = T_ref[0, c, :, :n].permute(1, 0, 2)  # [H, n, n]
        b = beta[0, c].double().T[:, :, None]
        w[0, c] = (Tc @ (b * torch.exp(G[0, c].T)[:, :, None] * k[0, c].double().permute(1, 0, 2))).permute(1, 0, 2)
        u[0, c] = (Tc @ (b * v[0, c].double().permute(1, 0, 2))).permute(1, 0, 2)
    return w, u


@inproc
@pytest.mark.parametrize("case", ["unit keys", "v x 2^20", "v x 2^-30", "T past fp16"])
def test_solve16_matches_float64(case, monkeypatch):
    """The prep with the fp16 inverse and solve (chunk_prep_split with u16): w (bf16) and u = values x scale against
    float64 from the inputs. u is stored over a power of two per row and block of U_BLOCK columns (values' largest
    element in [2^14, 2^15)), so u far above fp16's range (v x 2^20) and far below it (v x 2^-30, where plain fp16
    would flush to zero) keeps fp16's relative precision; at v x 2^-30 the fp16 product's operand would be
    subnormal, so the solve flags the chunks and _fix_kernel solves them again with fp32 (tf32) products. With keys
    of norm 5 the inverse overflows fp16: every product of the chunk goes the fp32 way."""
    q, k, v, g, beta, T_ref = prep_inputs(5.0 if case == "T past fp16" else 1.0)
    v = {"v x 2^20": (v.float() * 2.0 ** 20).bfloat16(), "v x 2^-30": (v.float() * 2.0 ** -30).bfloat16()}.get(case, v)
    w_ref, u_ref = solve_ref(k, v, g, beta, T_ref)
    layout = make_layout(1, T_, None, "cpu")
    _, w, u, _, _, _ = sp.chunk_prep_split(q, k, v, g, beta, K ** -0.5, layout, torch.bfloat16, torch.float32,
                                           aqk=False, u16=True)
    assert isinstance(u, Scaled) and u.values.dtype == torch.float16 and u.scale.shape == (1, T_, H, 2)
    vmax = torch.stack([u.values[..., :64].float().abs().amax(-1), u.values[..., 64:].float().abs().amax(-1)], -1)
    assert ((vmax >= 2 ** 14) & (vmax < 2 ** 15)).all()
    assert torch.equal(torch.exp2(torch.log2(u.scale).round()), u.scale)  # powers of two
    u_full = u.values.double() * u.scale.double().repeat_interleave(64, -1)[..., :V]
    bound = 5e-3 if case == "T past fp16" else 1e-3  # (T ~1e12 there: float64's own T and fp32's differ more)
    assert rel(w, w_ref) < 5e-3 and rel(u_full, u_ref) < bound, (rel(w, w_ref), rel(u_full, u_ref))
    # the fp32 route (the backward's: no Scaled u, fp32 products), from the same T: the same to fp16's rounding
    monkeypatch.setitem(sp.SPLIT_CONFIG, "inverse_f16", False)
    _, w32, u32, _, _, _ = sp.chunk_prep_split(q, k, v, g, beta, K ** -0.5, layout, torch.bfloat16, torch.float32,
                                               aqk=False)
    assert rel(u_full, u32) < bound and rel(w, w32) < 5e-3


@inproc
@pytest.mark.parametrize("channel", [False, True], ids=["gdn", "kda"])
def test_no_grad_forward_with_fp16_solve(channel, monkeypatch):
    """The no-grad forward through the solve kernel (the split prep, the solve not in the scan) with the fp16 inverse
    and solve: o and the final state against the float64 recurrence, and against the same forward with both off;
    then v x 2^20 (u far past fp16's range, held by its row scales; o is linear in v without an initial state)."""
    monkeypatch.setitem(prep_mod.PREP_CONFIG, "design", "split")
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "solve_min_seqs_heads", {"gdn": 10 ** 6, "kda": 10 ** 6})
    q, k, v, g, beta, h0 = make_inputs(23, 2, 150, H, 64, 128, channel, torch.bfloat16, 2, False)
    ro, rht = recurrent_gated_delta_rule(*(x.double() for x in (q, k, v, g, beta)), initial_state=h0.double(),
                                         output_final_state=True)
    outs = {}
    for on in (True, False):
        monkeypatch.setitem(sp.SPLIT_CONFIG, "solve16", on)
        monkeypatch.setitem(sp.SPLIT_CONFIG, "inverse_f16", on)
        with torch.no_grad():
            outs[on] = gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True)
    (o, ht), (o_off, ht_off) = outs[True], outs[False]
    assert rel(o, ro) < 5e-3 and rel(ht, rht) < 2e-3, (rel(o, ro), rel(ht, rht))
    assert rel(o, o_off) < 4e-3 and rel(ht, ht_off) < 2e-3, (rel(o, o_off), rel(ht, ht_off))
    monkeypatch.setitem(sp.SPLIT_CONFIG, "solve16", True)
    monkeypatch.setitem(sp.SPLIT_CONFIG, "inverse_f16", True)
    ro0, _ = recurrent_gated_delta_rule(*(x.double() for x in (q, k, v, g, beta)))
    with torch.no_grad():
        o_big = gated_delta_rule(q, k, (v.float() * 2.0 ** 20).bfloat16(), g, beta)[0]
    assert rel(o_big.double() / 2.0 ** 20, ro0) < 5e-3
