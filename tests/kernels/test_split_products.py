"""The sequential kernels' state-side products taken as pairs of bf16 products (SPLIT, round 12:
chunk_scan.split_update) against float64 recurrences over the very same operands.

Each fp32 tile that meets a 16-bit operand is split into hi + lo (16 bits of mantissa between them),
so a product's error is that of the split alone: near 2^-17 on the GPU and 2^-16 under the interpreter,
which truncates both halves. The bound, 2e-4, is 10x over what the split gives here and 10x under what
dropping any one lo term gives (one bf16 rounding, 2^-9); the other products are fp32 under the
interpreter (w h included: w is bf16, as "mixed" stores it and as the split requires, and the
interpreter takes h unrounded). Run under TRITON_INTERPRET=1 (tests/kernels/conftest.py).
"""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from hybridize.kernels import chunk_scan as scan_mod  # noqa: E402
from hybridize.kernels._common import CHUNK, make_layout  # noqa: E402
from hybridize.kernels.chunk_bwd import launch_dh  # noqa: E402
from hybridize.kernels.chunk_scan import chunk_scan, split_update  # noqa: E402

from .test_gated_delta_kernels import inproc, rel  # noqa: E402

T, H, K, V, BOUND = 200, 2, 64, 32, 2e-4  # T: three full chunks and a partial one
# The dh scan's SPLIT 3 case: the q e^G pair is its only split (kg dh and w^T dvn are fp32 products under the
# interpreter), and that term carries a small share of dh here: its lo half dropped gives 9e-5, dvn rounded to bf16 in
# w^T dvn 4.6e-3, the kernel as written 3.4e-7 (round 22)
QSPLIT_BOUND = 2e-5


def chunk_lower(x):
    """x [1, T, H, CHUNK] (each token's row of its chunk's matrix) with the row's entries past the diagonal
    zeroed: a lower-triangular Aqk, as the kernels store and read it (_common.tril_mask)."""
    pos = torch.arange(x.shape[1]) % CHUNK
    return x * (torch.arange(CHUNK)[None, :] <= pos[:, None])[None, :, None, :]


def operands(seed: int):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    g = -torch.nn.functional.softplus(r(1, T, H) - 2.0)
    G = torch.cat([c.cumsum(1) for c in g.split(CHUNK, dim=1)], 1)  # chunk-local, as the prep's
    chunks = [slice(c0, min(c0 + CHUNK, T)) for c0 in range(0, T, CHUNK)]
    return r, G, chunks


def check_scan(k, w, u, G, h0, chunks, update, kg=None):
    """Runs chunk_scan (states kept in fp32) and compares its stored states, vn and final state with the
    float64 scan: per chunk, vn = u - w h, then h <- update(chunk, h, vn)."""
    layout = make_layout(1, T, None, "cpu")
    _, ht, hs, vn = chunk_scan(k, k, w, u, G, u, K ** -0.5, layout, initial_state=h0, output_final_state=True,
                               store_h=True, state_dtype=torch.float32, kg=kg)
    h = h0[0].double()
    ref_h, ref_vn = [], torch.zeros(T, H, V, dtype=torch.float64)
    wd, ud = w[0].double(), u[0].double()
    for c in chunks:
        ref_h.append(h.clone())
        vc = ud[c] - torch.einsum("thk,hkv->thv", wd[c], h)
        ref_vn[c] = vc
        h = update(c, h, vc)
    errs = (rel(torch.stack(ref_h), hs.double()), rel(ref_vn, vn[0].double()), rel(h, ht[0].double()))
    assert max(errs) < BOUND, errs


@inproc
def test_scan_split_update_matches_float64():
    """vn = u - w h; h <- e^{G_last} h + (k e^{G_last - G})^T vn, with bf16 k (taken as loaded), bf16 w
    and fp32 u: stored states, vn and the final state."""
    r, G, chunks = operands(3)
    k = torch.nn.functional.normalize(r(1, T, H, K), dim=-1).bfloat16()
    w, u, h0 = (0.5 * r(1, T, H, K)).bfloat16(), r(1, T, H, V), r(1, H, K, V)
    assert split_update(k.dtype, u.dtype, w.dtype, K)
    kd, Gd = k[0].double(), G[0].double()

    def update(c, h, vc):
        Gl = Gd[c][-1]
        return h * Gl.exp()[:, None, None] + torch.einsum("thk,thv->hkv", kd[c] * (Gl - Gd[c]).exp()[..., None], vc)
    check_scan(k, w, u, G, h0, chunks, update)


@inproc
def test_scan_split_kg_matches_float64(monkeypatch):
    """Per-channel gates with kg = k e^{G_last - G} from the prep (fp32): h <- e^{G_last} h + kg^T vn, kg
    and vn both split (SCAN_CONFIG["split_kg"], three products)."""
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "split_kg", True)
    r, _, chunks = operands(5)
    g = -5.0 * torch.sigmoid(r(1, T, H, K) - 1.0)
    G = torch.cat([c.cumsum(1) for c in g.split(CHUNK, dim=1)], 1)
    k = torch.nn.functional.normalize(r(1, T, H, K), dim=-1).bfloat16()
    kg = torch.cat([k[:, c].float() * (G[:, c][:, -1:] - G[:, c]).exp() for c in chunks], 1)
    w, u, h0 = (0.5 * r(1, T, H, K)).bfloat16(), r(1, T, H, V), r(1, H, K, V)
    assert scan_mod.split_kind(k.dtype, u.dtype, w.dtype, K, kg=True) == 2
    kgd, Gd = kg[0].double(), G[0].double()
    check_scan(k, w, u, G, h0, chunks,
               lambda c, h, vc: h * Gd[c][-1].exp()[..., None] + torch.einsum("thk,thv->hkv", kgd[c], vc), kg=kg)


def check_dh_scan(q, k, decayed: bool, w, G, do, seed_r, chunks, q_rows, k_rows, bound: float = BOUND):
    """Runs the dh scan (launch_dh) on these operands with a lower-triangular Aqk and a small dht, and
    compares dh per chunk, dvn and dh0 with the float64 reverse recurrence
        dvn = Aqk^T do + k' dh;  dh <- e^{G_last} dh + q'^T do - w^T dvn,
    q' = q_rows(chunk) and k' = k_rows(chunk) (float64 [n, H, K]: the gates and the scale applied)."""
    Aqk = chunk_lower(0.1 * seed_r(1, T, H, CHUNK))
    dht = 0.1 * seed_r(1, H, K, V)
    layout = make_layout(1, T, None, "cpu")
    dh_all = torch.empty(layout.num_chunks, H, K, V)
    dvn, dh0 = torch.empty(1, T, H, V), torch.empty(1, H, K, V)
    launch_dh(q, k, decayed, w, G, Aqk, do, dht, dh_all, dvn, dh0, layout, K ** -0.5)
    dh = dht[0].double()
    wd, dod, Ad, Gd = (x[0].double() for x in (w, do, Aqk, G))
    ref_dh, ref_dvn = [None] * len(chunks), torch.zeros(T, H, V, dtype=torch.float64)
    for i in reversed(range(len(chunks))):
        c = chunks[i]
        ref_dh[i] = dh.clone()
        dv = torch.einsum("thj,thv->jhv", Ad[c][..., :c.stop - c.start], dod[c])
        dv = dv + torch.einsum("thk,hkv->thv", k_rows(c), dh)
        ref_dvn[c] = dv
        Gl = Gd[c][-1]
        # (G_last: [H] for scalar gates, [H, K] per channel)
        dh = (dh * Gl.exp().reshape(Gl.shape + (1,) * (3 - Gl.dim())) + torch.einsum("thk,thv->hkv", q_rows(c), dod[c])
              - torch.einsum("thk,thv->hkv", wd[c], dv))
    errs = (rel(torch.stack(ref_dh), dh_all.double()), rel(ref_dvn, dvn[0].double()), rel(dh, dh0[0].double()))
    assert max(errs) < bound, errs


@inproc
def test_dh_scan_split_matches_float64():
    """The backward's dh scan in reverse, with bf16 q, k, w (as "mixed" stores w) and fp32 Aqk, do':
    dvn = Aqk^T do + (k e^{G_last - G}) dh; dh <- e^{G_last} dh + (scale q e^G)^T do - w^T dvn."""
    r, G, chunks = operands(4)
    # q unnormalised and dht small: each of the three products carries a comparable share of dh
    q, k = r(1, T, H, K).bfloat16(), torch.nn.functional.normalize(r(1, T, H, K), dim=-1).bfloat16()
    w = (0.5 * r(1, T, H, K)).bfloat16()
    do = r(1, T, H, V).bfloat16()
    assert split_update(k.dtype, torch.float32, w.dtype, K)
    qd, kd, Gd = (x[0].double() for x in (q, k, G))
    check_dh_scan(q, k, False, w, G, do, r, chunks,
                  lambda c: K ** -0.5 * qd[c] * Gd[c].exp()[..., None],
                  lambda c: kd[c] * (Gd[c][-1] - Gd[c]).exp()[..., None])


@inproc
def test_dh_scan_split_per_channel_matches_float64(monkeypatch):
    """Per-channel gates (BWD_CONFIG["dh_split_channel"], SPLIT 2): the dh scan takes q e^G and
    kg = k e^{G_last - G} formed in fp32 (chunk_prep.decayed), bf16 w and do:
    dvn = Aqk^T do + kg dh; dh <- e^{G_last} dh + scale (q e^G)^T do - w^T dvn, kg dh as three bf16
    products and the other two as two each."""
    from hybridize.kernels import chunk_bwd
    monkeypatch.setitem(chunk_bwd.BWD_CONFIG, "dh_split_channel", True)
    r, _, chunks = operands(6)
    g = -5.0 * torch.sigmoid(r(1, T, H, K) - 1.0)
    G = torch.cat([c.cumsum(1) for c in g.split(CHUNK, dim=1)], 1)
    q, k = r(1, T, H, K), torch.nn.functional.normalize(r(1, T, H, K), dim=-1)
    qg = q * G.exp()
    kg = torch.cat([k[:, c] * (G[:, c][:, -1:] - G[:, c]).exp() for c in chunks], 1)
    w, do = (0.5 * r(1, T, H, K)).bfloat16(), r(1, T, H, V).bfloat16()
    f32, bf = torch.float32, torch.bfloat16
    assert chunk_bwd.dh_split_kind(f32, f32, bf, bf, f32, K, True, True) == 2
    qd, kd = qg[0].double(), kg[0].double()
    check_dh_scan(qg, kg, True, w, G, do, r, chunks, lambda c: K ** -0.5 * qd[c], lambda c: kd[c])


@inproc
@pytest.mark.parametrize("kg_form", ["fp32", "bf16", "bf16 pair"])
def test_dh_scan_qsplit_matches_float64(kg_form, monkeypatch):
    """Per-channel gates' dh scan as SPLIT 3 (BWD_CONFIG["dh_qsplit"]): scale q e^G as the bf16 pair that
    chunk_prep.decayed's split writes (the decayed kernel checked with it), bf16 w and do; (q e^G)^T do as two bf16
    products, the [K, C] tiles loaded transposed. kg in fp32, or (BWD_CONFIG["dh_kg16"]) in bf16 from the same
    decayed pass as the pair, checked against float64 k e^{G_last - G} to bf16's rounding; the scan is then checked
    against the float64 recurrence of the bf16 kg it was given, with kg dh as a tf32 product or ("bf16 pair",
    BWD_CONFIG["dh_kg_pair"], here at head dim 64) as two bf16 products of dh's halves."""
    from hybridize.kernels import chunk_bwd
    from hybridize.kernels.chunk_prep import decayed
    kg16 = kg_form != "fp32"
    monkeypatch.setitem(chunk_bwd.BWD_CONFIG, "dh_kg_pair_min_dim", K if kg_form == "bf16 pair" else 2 * K)
    assert chunk_bwd.dh_kg_pair(torch.bfloat16, K, 16) == (kg_form == "bf16 pair")
    assert not chunk_bwd.dh_kg_pair(torch.bfloat16, K, 32) and not chunk_bwd.dh_kg_pair(torch.float16, K, 16)
    r, _, chunks = operands(7)
    g = -5.0 * torch.sigmoid(r(1, T, H, K) - 1.0)
    G = torch.cat([c.cumsum(1) for c in g.split(CHUNK, dim=1)], 1)
    q, k = r(1, T, H, K), torch.nn.functional.normalize(r(1, T, H, K), dim=-1)
    kg = torch.cat([k[:, c] * (G[:, c][:, -1:] - G[:, c]).exp() for c in chunks], 1)
    w, do = (0.5 * r(1, T, H, K)).bfloat16(), r(1, T, H, V).bfloat16()
    layout = make_layout(1, T, None, "cpu")
    if kg16:
        pair, kg16_out = decayed(q, G, layout, torch.float32, from_start=True, split=True, mult=K ** -0.5,
                                 keys=k.bfloat16())
        assert kg16_out.dtype == torch.bfloat16 and rel(kg[0].double(), kg16_out[0].double()) < 2 ** -8
        kg = kg16_out
        # dh_operands takes this path for fp32 kg (the recompute's) or none, and keeps a 16-bit one (decayed16's fp16)
        ops = chunk_bwd.dh_operands(q, k.bfloat16(), G, layout, torch.float32, kg=None, split_q=True, scale=K ** -0.5)
        assert torch.equal(ops[0], pair) and torch.equal(ops[1], kg16_out)
        kg_half = kg16_out.half()
        assert chunk_bwd.dh_operands(q, k, G, layout, torch.float32, kg=kg_half, split_q=True)[1] is kg_half
    else:
        pair = decayed(q, G, layout, torch.float32, from_start=True, split=True, mult=K ** -0.5)
    assert pair.shape == (2,) + tuple(q.shape) and pair.dtype == torch.bfloat16
    qgd = K ** -0.5 * q[0].double() * G[0].double().exp()
    assert rel(qgd, (pair[0].double() + pair[1].double())[0]) < 2 ** -15
    assert chunk_bwd.dh_qsplit(torch.bfloat16, torch.bfloat16, torch.float32, K, True)
    kd = kg[0].double()
    check_dh_scan(pair, kg, True, w, G, do, r, chunks, lambda c: qgd[c], lambda c: kd[c], bound=QSPLIT_BOUND)


def test_recompute_kg_dtype_scope(monkeypatch):
    """The backward recompute's kg (recompute_kg16): bf16 for bf16 keys and w with fp32 intermediates, per-channel
    gates, head dim <= 128 and keys the fused norm does not bound; fp16 where decayed16 applies; else fp32."""
    from hybridize.kernels import chunk_bwd
    bf, f32, f16 = torch.bfloat16, torch.float32, torch.float16
    kg_dtype = chunk_bwd.recompute_kg_dtype
    assert kg_dtype(bf, f32, bf, 128, True, False) == bf
    assert kg_dtype(bf, f32, bf, 128, True, True) == f16  # unit keys: decayed16's fp16
    monkeypatch.setitem(chunk_bwd.BWD_CONFIG, "decayed16", False)
    assert kg_dtype(bf, f32, bf, 128, True, True) == f32  # and without it, fp32 (not this rule's bf16)
    monkeypatch.setitem(chunk_bwd.BWD_CONFIG, "decayed16", True)
    assert kg_dtype(bf, f32, bf, 256, True, False) == f32
    assert kg_dtype(bf, f32, f32, 128, True, False) == f32  # intermediates "fp32"
    assert kg_dtype(f32, f32, f32, 128, True, False) == f32
    assert kg_dtype(f16, f32, f16, 128, True, False) == f32
    monkeypatch.setitem(chunk_bwd.BWD_CONFIG, "recompute_kg16", False)
    assert kg_dtype(bf, f32, bf, 128, True, False) == f32


def test_split_update_scope():
    """Where the split runs: bf16 keys with fp32 intermediates, scalar gates, head dim <= 128; and not
    when turned off (HYBRIDIZE_GDR_SPLIT=0 sets SCAN_CONFIG["split_update"])."""
    bf, f32 = torch.bfloat16, torch.float32
    assert split_update(bf, f32, bf, 128)
    assert not split_update(bf, f32, bf, 128, excluded=True)  # per-channel gates (dh scan), fused output
    assert not split_update(bf, f32, bf, 256)
    assert not split_update(bf, f32, f32, 128)  # intermediates="fp32": w in fp32
    assert not split_update(torch.float16, f32, torch.float16, 64)
    assert not split_update(bf, bf, bf, 64)  # intermediates="input"
    assert not split_update(f32, f32, f32, 64)
    assert scan_mod.split_kind(bf, f32, bf, 128, kg=False) == 1
    assert scan_mod.split_kind(bf, f32, bf, 128, kg=True) == (2 if scan_mod.SCAN_CONFIG["split_kg"] else 0)
    from hybridize.kernels.chunk_bwd import BWD_CONFIG, dh_split_kind
    assert dh_split_kind(bf, bf, bf, bf, f32, 128, False, False) == 1
    assert dh_split_kind(f32, f32, bf, bf, f32, 128, True, True) == (2 if BWD_CONFIG["dh_split_channel"] else 0)
    assert dh_split_kind(f32, f32, f32, bf, f32, 128, True, True) == 0  # intermediates="fp32"
    assert dh_split_kind(f32, f32, bf, bf, f32, 256, True, True) == 0
    assert dh_split_kind(bf, bf, bf, bf, f32, 128, True, False) == 0  # exponentiated in the loop
    from hybridize.kernels.chunk_bwd import dh_qsplit
    assert dh_qsplit(bf, bf, f32, 128, True) == (BWD_CONFIG["dh_qsplit"] and not BWD_CONFIG["dh_split_channel"])
    assert not dh_qsplit(bf, bf, f32, 128, False)  # scalar gates: SPLIT 1
    assert not dh_qsplit(f32, bf, f32, 128, True)  # intermediates="fp32"
    assert not dh_qsplit(bf, bf, bf, 128, True)  # intermediates="input"
    assert not dh_qsplit(bf, bf, f32, 256, True)
    saved = scan_mod.SCAN_CONFIG["split_update"]
    try:
        scan_mod.SCAN_CONFIG["split_update"] = False
        assert not split_update(bf, f32, bf, 64)
    finally:
        scan_mod.SCAN_CONFIG["split_update"] = saved
