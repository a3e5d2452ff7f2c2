"""Round 13's and 14's forward paths, on the CPU under TRITON_INTERPRET=1 (tests/kernels/conftest.py):

* the scan that folds the prep's solve in (chunk_scan's SOLVE, chunk_prep.solve_in_scan; both gate kinds):
  vn = T diag(beta) (v - (k e^G) h) from T, v and beta, where the solve kernel would have written
  w = T diag(beta) (k e^G) and u = T diag(beta) v for the scan to read;
* the output kernel forming Aqk = tril(scale q k^T e^{G_t - G_s}) itself when no backward needs it stored
  (chunk_output's QK; scalar gates);
* (round 14) the output kernel reading vn in fp16, and forming vn again in fp32 for a chunk whose fp16
  product is not finite (chunk_output's VN16, _vn_again);
* (round 18) the output kernel reading per-channel gates' scale q e^G from the pairs kernel (chunk_output's QG).

Each against float64 over the very same operands. Under the interpreter every product is fp32 (no tf32
rounding, h not rounded to bf16 for k h) and the state update is split into bf16 halves (2^-16), so the
states land near 1e-6 and the bounds below are tight: leaving out beta, the gate or a lo half fails them.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from hybridize.kernels import chunk_scan as scan_mod  # noqa: E402
from hybridize.kernels import gated_delta_rule  # noqa: E402
from hybridize.kernels._common import CHUNK, make_layout  # noqa: E402
from hybridize.kernels.chunk_output import OUTPUT_CONFIG  # noqa: E402
from hybridize.kernels.chunk_prep import solve_in_scan  # noqa: E402
from hybridize.kernels.chunk_scan import chunk_scan  # noqa: E402
from hybridize.modeling.gated_delta import recurrent_gated_delta_rule  # noqa: E402

from .test_gated_delta_kernels import check, inproc, make_inputs, rel  # noqa: E402

T, H, K, V = 200, 2, 64, 32  # three full chunks and a partial one


def solve_operands(seed: int = 13):
    """k, v, beta (bf16), chunk-local G, T (fp32 [1, T, H, 64]), h0 and the chunks' slices."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    g = -F.softplus(r(1, T, H) - 2.0)
    G = torch.cat([c.cumsum(1) for c in g.split(CHUNK, dim=1)], 1)  # chunk-local, as the prep's
    chunks = [slice(c0, min(c0 + CHUNK, T)) for c0 in range(0, T, CHUNK)]
    k = F.normalize(r(1, T, H, K), dim=-1).bfloat16()
    v, beta, h0 = r(1, T, H, V).bfloat16(), torch.sigmoid(r(1, T, H)).bfloat16(), r(1, H, K, V)
    # T of each chunk: (I + A)^-1 for a random strictly lower A, rows at the chunk's tokens, zero columns
    # past a partial chunk's end (as the prep stores it)
    Tm = torch.zeros(1, T, H, CHUNK)
    for c in chunks:
        n = c.stop - c.start
        A = torch.tril(0.3 * r(H, n, n), -1).double()
        Tm[0, c, :, :n] = torch.linalg.inv(torch.eye(n, dtype=torch.float64) + A).permute(1, 0, 2).float()
    return k, v, beta, G, Tm, h0, chunks


@inproc
@pytest.mark.parametrize("channel", [False, True], ids=["gdn", "kda"])
def test_scan_solve_matches_float64(channel):
    """Stored states, vn and the final state of the scan with the solve folded in, against the float64
    scan: per chunk vn = T diag(beta) (v - (k e^G) h), h <- e^{G_last} h + (k e^{G_last - G})^T vn. Per-channel
    gates take k e^G in bf16 and kg = k e^{G_last - G} in fp32, as the prep hands them over."""
    k, v, beta, G, Tm, h0, chunks = solve_operands()
    assert solve_in_scan(k, "mixed", channel)
    layout = make_layout(1, T, None, "cpu")
    kG = kg = None
    if channel:
        g = -3.0 * torch.sigmoid(torch.randn(1, T, H, K, generator=torch.Generator().manual_seed(3)) - 1.0)
        G = torch.cat([c.cumsum(1) for c in g.split(CHUNK, dim=1)], 1)
        kG = torch.cat([k[:, c].float() * G[:, c].exp() for c in chunks], 1).bfloat16()
        kg = torch.cat([k[:, c].float() * (G[:, c][:, -1:] - G[:, c]).exp() for c in chunks], 1)
    _, ht, hs, vn = chunk_scan(k, k, None, None, G, None, K ** -0.5, layout, initial_state=h0,
                               output_final_state=True, store_h=True, state_dtype=torch.float32, kg=kg,
                               solve=(Tm, v, beta, kG))
    kd, vd, bd, Gd, Td = (x[0].double() for x in (k, v, beta, G, Tm))
    h = h0[0].double()
    ref_h, ref_vn = [], torch.zeros(T, H, V, dtype=torch.float64)
    for c in chunks:
        n = c.stop - c.start
        ref_h.append(h.clone())
        if channel:
            kh = torch.einsum("thk,hkv->thv", kG[0, c].double(), h)
            Gl = Gd[c][-1]  # [H, K]
            h = h * Gl.exp()[..., None]
            upd = kg[0, c].double()
        else:
            kh = torch.einsum("thk,hkv->thv", kd[c], h) * Gd[c].exp()[..., None]
            Gl = Gd[c][-1]
            h = h * Gl.exp()[:, None, None]
            upd = kd[c] * (Gl - Gd[c]).exp()[..., None]
        x = (vd[c] - kh) * bd[c][..., None]
        ref_vn[c] = torch.einsum("thj,jhv->thv", Td[c][..., :n], x)
        h = h + torch.einsum("thk,thv->hkv", upd, ref_vn[c])
    errs = (rel(torch.stack(ref_h), hs.double()), rel(ref_vn, vn[0].double()), rel(h, ht[0].double()))
    assert max(errs) < 2e-4, errs


@inproc
@pytest.mark.parametrize("case", ["D64", "D128 T150", "packed", "l2", "kda D64", "kda packed"])
def test_no_grad_forward_matches_float64(case, monkeypatch):
    """The forward without gradients on bf16 inputs (the inputs the reference sees too), with the solve in
    the scan (its documents x heads threshold lowered to these small shapes) and Aqk formed by the output
    kernel: the final state to fp32 accuracy, o to its own bf16 rounding; "l2" normalises q and k inside,
    with rho_q as o's row scale (and both to bf16's rounding of the rescaled v and beta). The same inputs
    through the solve kernel and a stored Aqk give o within two roundings of it."""
    K_, T_, cu = {"D64": (64, 200, None), "D128 T150": (128, 150, None), "packed": (64, 300, [0, 70, 71, 300]),
                  "l2": (64, 130, None), "kda D64": (64, 200, None), "kda packed": (64, 300, [0, 70, 71, 300])}[case]
    l2, channel = case == "l2", case.startswith("kda")
    B = 2 if cu is None else 1
    n_seq = B if cu is None else len(cu) - 1
    cu_t = None if cu is None else torch.tensor(cu, dtype=torch.int32)
    q, k, v, g, beta, h0 = make_inputs(31, B, T_, H, K_, K_, channel, torch.bfloat16, n_seq, l2)
    ro, rht = recurrent_gated_delta_rule(*(x.double() for x in (q, k, v, g, beta)), initial_state=h0.double(),
                                         output_final_state=True, cu_seqlens=cu_t, use_qk_l2norm=l2)
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "solve_min_seqs_heads", {"gdn": 0, "kda": 0})
    assert OUTPUT_CONFIG["qk"] and solve_in_scan(k, None, channel, n_seq * H)
    run = dict(initial_state=h0, output_final_state=True, cu_seqlens=cu_t, use_qk_l2norm=l2)
    with torch.no_grad():
        o, ht = gated_delta_rule(q, k, v, g, beta, **run)
    # with l2 the kernels take v / rho_k and beta rho_k^2 rounded to bf16: the state to that rounding
    state_bound, o_bound = (1e-2, 1e-2) if l2 else (1e-4, 5e-3)
    assert rel(ht, rht) < state_bound and rel(o, ro) < o_bound, (rel(ht, rht), rel(o, ro))
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "solve", False)
    monkeypatch.setitem(OUTPUT_CONFIG, "qk", False)
    with torch.no_grad():
        o_old, _ = gated_delta_rule(q, k, v, g, beta, **run)
    assert rel(o_old, ro) < 1e-2 and rel(o, o_old) < 8e-3


@inproc
def test_output_forms_aqk_as_the_prep_does(monkeypatch):
    """fp32 inputs: Aqk formed in the output kernel from q and k, or stored by the prep and read back,
    give the same o (the same products in the same order)."""
    q, k, v, g, beta, h0 = make_inputs(5, 2, 150, H, 64, 64, False, torch.float32, 2, False)
    outs = []
    for qk in (True, False):
        monkeypatch.setitem(OUTPUT_CONFIG, "qk", qk)
        with torch.no_grad():
            outs.append(gated_delta_rule(q, k, v, g, beta, initial_state=h0)[0])
    assert rel(outs[0], outs[1]) < 1e-6


@inproc
@pytest.mark.parametrize("channel", [False, True], ids=["gdn", "kda"])
def test_training_forward_with_solve_in_scan(channel, monkeypatch):
    """The forward that keeps T for the backward folds the solve in too (the backward re-runs the solve
    kernel for w): outputs, final state and every gradient within the bf16 bound of float64."""
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "solve_min_seqs_heads", {"gdn": 0, "kda": 0})
    check(17, 2, 150, 2, 64, 64, channel, dtype=torch.bfloat16, l2=True)


def test_solve_in_scan_scope(monkeypatch):
    """Where the solve runs in the scan: bf16 inputs with the "mixed" intermediates, head dim <= 128, and at
    least SCAN_CONFIG["solve_min_seqs_heads"] documents x heads for the gate kind (0 for both since round 22,
    when the scan's prefetch made it pay at 16 documents x heads too; the threshold stays as a switch)."""
    bf = torch.empty(1, 1, 1, 128, dtype=torch.bfloat16)
    least = scan_mod.SCAN_CONFIG["solve_min_seqs_heads"]
    assert least == {"gdn": 0, "kda": 0}
    assert solve_in_scan(bf, "mixed", False, 1) and solve_in_scan(bf, "mixed", True, 1)
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "solve_min_seqs_heads", {"gdn": 32, "kda": 0})
    assert solve_in_scan(bf, "mixed", False, 32)
    assert not solve_in_scan(bf, "mixed", False, 31)
    assert solve_in_scan(bf, "mixed", True, 1)
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "solve_min_seqs_heads", least)
    assert solve_in_scan(bf, "mixed", True, least["kda"]) == scan_mod.SCAN_CONFIG["solve_channel"]
    assert not solve_in_scan(bf, "fp32", False, least["gdn"])
    assert not solve_in_scan(bf, "input", True, least["kda"])
    assert not solve_in_scan(bf.float(), "mixed", False, least["gdn"])
    assert not solve_in_scan(torch.empty(1, 1, 1, 256, dtype=torch.bfloat16), "mixed", True, least["kda"])
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "solve_channel", False)
    assert not solve_in_scan(bf, "mixed", True, least["kda"])
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "solve", False)
    assert not solve_in_scan(bf, "mixed", False, least["gdn"])


@inproc
@pytest.mark.parametrize("channel", [False, True], ids=["gdn", "kda"])
@pytest.mark.parametrize("solve_min", [0, 10**6], ids=["solve in scan", "solve kernel"])
def test_vn16_output(channel, solve_min, monkeypatch):
    """The output kernel's vn in fp16 (OUTPUT_CONFIG["vn16"]), bf16 inputs: o as with fp32 vn, against the
    float64 recurrence too. Then past fp16's range: o is linear in v and in q (no initial state), so with v
    times 2^17 or q times 2^22 (exact) o must be as many times the same o. vn then reaches ~1e5, or the
    formed or stored Aqk passes 65504: inf in fp16, and those chunks are computed again on fp32 tiles
    (chunk_output's _vn_again); without that, o is not finite. With the solve in the scan or in its own
    kernel: the fallback forms vn from (T, v, beta, k e^G) or from (w, u). Called as a function (head dims up to
    OUTPUT_CONFIG["call_max_dim"], as here) or inlined, it gives the same o."""
    q, k, v, g, beta, _ = make_inputs(11, 2, 150, H, 64, 64, channel, torch.bfloat16, 2, False)
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "solve_min_seqs_heads", {"gdn": solve_min, "kda": solve_min})
    outs = {}
    for vn16 in (False, True):
        monkeypatch.setitem(OUTPUT_CONFIG, "vn16", vn16)
        with torch.no_grad():
            outs[vn16] = gated_delta_rule(q, k, v, g, beta)[0]
    ro, _ = recurrent_gated_delta_rule(*(x.double() for x in (q, k, v, g, beta)))
    assert rel(outs[True], ro) < 5e-3 and rel(outs[True], outs[False]) < 4e-3, (rel(outs[True], ro),
                                                                               rel(outs[True], outs[False]))
    with torch.no_grad():  # (q: |scale q.k| up to ~0.1 here, times 2^22)
        scaled = [(gated_delta_rule(q, k, v * 2.0 ** 17, g, beta)[0], 2.0 ** 17),
                  (gated_delta_rule(q * 2.0 ** 22, k, v, g, beta)[0], 2.0 ** 22)]
    for o, f in scaled:
        assert torch.isfinite(o).all()
        assert rel(o.double() / f, ro) < 5e-3 and rel(o.double() / f, outs[True].double()) < 4e-3
    if not channel and solve_min == 0:  # head dim 64 calls the fallback as a function; inlined, the same numbers
        monkeypatch.setitem(OUTPUT_CONFIG, "call_max_dim", 0)
        with torch.no_grad():
            assert torch.equal(gated_delta_rule(q, k, v * 2.0 ** 17, g, beta)[0], scaled[0][0])


@inproc
def test_pairs_kernel_forms_the_scans_decayed_keys(monkeypatch):
    """Round 16: for the scan that does the solve, the per-channel pairs kernel also writes kg = k e^{G_last - G}
    and k e^G (chunk_prep_split's pairs_decayed), which chunk_prep.decayed's own kernel formed before: the same
    numbers, bit for bit, over packed documents with partial chunks, with kg in fp32 or bf16 (kg_format); G, T
    and Aqk unchanged by it. kg_format "split" (pairs kernel only): bf16 hi and lo with hi + lo equal to the
    fp32 kg within 16 bits of mantissa."""
    from hybridize.kernels import chunk_prep as prep_mod
    from hybridize.kernels import chunk_prep_split as split_mod
    gen = torch.Generator().manual_seed(5)
    L, Kd = 333, 128
    q, k = (F.normalize(torch.randn(1, L, H, Kd, generator=gen), dim=-1).bfloat16() for _ in range(2))
    v = torch.randn(1, L, H, V, generator=gen).bfloat16()
    g = -5.0 * torch.sigmoid(torch.randn(1, L, H, Kd, generator=gen) - 1.0)
    beta = torch.sigmoid(torch.randn(1, L, H, generator=gen)).bfloat16()
    layout = make_layout(1, L, torch.tensor([0, 70, 200, L], dtype=torch.int32), "cpu")

    def prep(fused, fmt):
        monkeypatch.setitem(split_mod.SPLIT_CONFIG, "pairs_decayed", fused)
        monkeypatch.setitem(scan_mod.SCAN_CONFIG, "kg_format", fmt)
        return prep_mod.chunk_prep(q, k, v, g, beta, Kd ** -0.5, layout, solve=False)

    for fmt, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        outs = [prep(fused, fmt) for fused in (False, True)]
        for name, a, b in zip(("G", "k e^G", "u", "Aqk", "T", "kg"), *outs):
            assert (a is None) == (b is None), name
            # Aqk and T: their upper triangles are never written (NaN under the tests' poison), in both runs
            assert a is None or (torch.equal(a.isnan(), b.isnan())
                                 and torch.equal(a.nan_to_num(), b.nan_to_num())), name
        assert outs[1][1].dtype == torch.bfloat16 and outs[1][5].dtype == dtype
    kg = prep(True, "fp32")[5].double()
    pair = prep(True, "split")[5]
    hi, lo = pair[0].double(), pair[1].double()
    # hi is kg to bf16's 8 bits, hi + lo to 16 (the interpreter rounds to bf16 by truncation, the GPU to nearest:
    # both within these bounds); relative bounds for kg over 2^-100 (so that lo too is a normal number)
    normal = kg.abs() >= 2.0 ** -100
    assert pair.shape == (2,) + kg.shape and pair.dtype == torch.bfloat16
    assert bool(((hi - kg).abs() <= 2.0 ** -7 * kg.abs())[normal].all())
    assert bool(((hi + lo - kg).abs() <= 2.0 ** -15 * kg.abs())[normal].all())
    assert bool(((hi + lo - kg).abs() < 2.0 ** -100)[~normal].all())
    assert prep(False, "split")[5].dtype == torch.float32  # _decayed_kernel writes one tensor: fp32


@inproc
@pytest.mark.parametrize("aligned", [False, True])
def test_scan_kg_formats(aligned, monkeypatch):
    """Round 16: the per-channel scan that does the solve takes kg as a bf16 hi + lo pair (kg_format "split",
    SPLIT 4: three bf16 products) by default, or in bf16 (SPLIT 3, two products) or fp32 (one tf32 product).
    Against float64: "split" and "fp32" hold the bf16 bound and split's final state is as exact as fp32's; bf16
    kg alone is not, on aligned keys (its state error about twice theirs: why it is not the default). The
    three differ from one another (each path really runs)."""
    from hybridize.kernels.chunk_scan import split_kind
    bf, f32 = torch.bfloat16, torch.float32
    assert split_kind(bf, f32, bf, 128, True, kg_dtype=bf, kg_split=True) == 4
    assert split_kind(bf, f32, bf, 128, True, kg_dtype=bf) == 3
    assert split_kind(bf, f32, bf, 128, True, kg_dtype=f32) == 0
    ins = make_inputs(3, 1, T, H, 128, V, True, bf, 1, True, aligned)
    ref_o, ref_ht = recurrent_gated_delta_rule(*(x.double() for x in ins[:5]), initial_state=ins[5].double(),
                                               output_final_state=True, use_qk_l2norm=True)
    err, hts = {}, {}
    for fmt in ("fp32", "bf16", "split"):
        monkeypatch.setitem(scan_mod.SCAN_CONFIG, "kg_format", fmt)
        with torch.no_grad():
            o, hts[fmt] = gated_delta_rule(*ins[:5], initial_state=ins[5], output_final_state=True, use_qk_l2norm=True)
        err[fmt] = rel(hts[fmt], ref_ht)
        assert rel(o, ref_o) < 1e-2
    assert err["fp32"] < 1e-2 and err["split"] < 1.02 * err["fp32"]
    if aligned:
        assert err["bf16"] > 1.5 * err["split"]
    assert not torch.equal(hts["split"], hts["fp32"]) and not torch.equal(hts["split"], hts["bf16"])


@inproc
def test_output_reads_scaled_q_eg_from_the_pairs_kernel(monkeypatch):
    """Round 18: for per-channel gates, the pairs kernel that forms the scan's decayed keys also writes
    scale q e^G in bf16 (chunk_prep's qg), and the output kernel reads it in place of q and G
    (OUTPUT_CONFIG["qg"], up to head dim qg_max_dim): on the GPU the same bf16 operand it formed itself.
    Here: qg is scale q e^G from the prep's own G to one bf16 rounding, the forward takes that path (and
    not past qg_max_dim), and o with it matches the float64 recurrence and o without it, over packed
    documents with partial chunks."""
    from hybridize.kernels import autograd
    from hybridize.kernels import chunk_prep as prep_mod
    q, k, v, g, beta, _ = make_inputs(17, 1, 333, H, 64, 64, True, torch.bfloat16, 3, False)
    cu = torch.tensor([0, 70, 200, 333], dtype=torch.int32)
    layout = make_layout(1, 333, cu, "cpu")
    scale = 64 ** -0.5
    qg = torch.full_like(q, float("nan"))
    G = prep_mod.chunk_prep(q, k, v, g, beta, scale, layout, solve=False, qg=qg)[0]
    ref = q.float() * scale * G.exp()
    assert torch.isfinite(qg).all()
    # one bf16 rounding: 2^-8 to nearest on the GPU, 2^-7 by the interpreter's truncation
    # (relative bounds for scale q e^G over 2^-100: below, bf16's subnormals, an absolute one)
    err, normal = (qg.float() - ref).abs(), ref.abs() >= 2.0 ** -100
    assert bool((err <= 1.01 * 2.0 ** -7 * ref.abs())[normal].all()) and bool((err < 2.0 ** -100)[~normal].all())
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("qg") is not None)
        return chunk_output(*args, **kwargs)

    chunk_output = autograd.chunk_output
    monkeypatch.setattr(autograd, "chunk_output", spy)
    outs = {}
    for on, max_dim in ((False, 64), (True, 32), (True, 64)):  # on, but over the head dims it serves: off
        monkeypatch.setitem(OUTPUT_CONFIG, "qg", on)
        monkeypatch.setitem(OUTPUT_CONFIG, "qg_max_dim", max_dim)
        with torch.no_grad():
            outs[on and max_dim == 64] = gated_delta_rule(q, k, v, g, beta, cu_seqlens=cu.long())[0]
    assert seen == [False, False, True]
    ro = torch.cat([recurrent_gated_delta_rule(*(x[:, a:b].double() for x in (q, k, v, g, beta)))[0]
                    for a, b in ((0, 70), (70, 200), (200, 333))], 1)
    assert rel(outs[True], ro) < 5e-3 and rel(outs[True], outs[False]) < 4e-3, (rel(outs[True], ro),
                                                                               rel(outs[True], outs[False]))


@inproc
@pytest.mark.parametrize("channel", [False, True], ids=["gdn", "kda"])
def test_scan_prefetch_changes_nothing(channel, monkeypatch):
    """The scan's G_last and beta loaded one chunk ahead (SCAN_CONFIG["prefetch"], ["prefetch_gdn"]) are the same
    values as loaded in the step: o and the final state are bitwise those without, with the solve in the scan,
    across packed documents whose first is empty and one of which is a single token; and within the bf16 bound of
    float64."""
    cu = [0, 0, 70, 71, 300]
    cu_t = torch.tensor(cu, dtype=torch.int32)
    q, k, v, g, beta, h0 = make_inputs(41, 1, 300, H, 64, 64, channel, torch.bfloat16, len(cu) - 1, False)
    ro, rht = recurrent_gated_delta_rule(*(x.double() for x in (q, k, v, g, beta)), initial_state=h0.double(),
                                         output_final_state=True, cu_seqlens=cu_t)
    monkeypatch.setitem(scan_mod.SCAN_CONFIG, "solve_min_seqs_heads", {"gdn": 0, "kda": 0})
    outs = {}
    for level in (0, 1, 2):
        monkeypatch.setitem(scan_mod.SCAN_CONFIG, "prefetch", level)
        monkeypatch.setitem(scan_mod.SCAN_CONFIG, "prefetch_gdn", level)
        with torch.no_grad():
            outs[level] = gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                           cu_seqlens=cu_t)
    for level in (1, 2):
        assert torch.equal(outs[level][0], outs[0][0]) and torch.equal(outs[level][1], outs[0][1]), level
    assert rel(outs[2][1], rht) < 1e-4 and rel(outs[2][0], ro) < 5e-3, (rel(outs[2][1], rht), rel(outs[2][0], ro))


@inproc
def test_dh_prefetch_changes_nothing(monkeypatch):
    """The KDA dh scan's G_last and Aqk^T do loaded one chunk ahead (BWD_CONFIG["dh_prefetch"], SPLIT 3 only) are the
    values loaded in the step: every gradient is bitwise the same at levels 0 and 2 (2 includes 1's G_last), across
    packed documents whose first is empty and one of which is a single token (the prefetch before a document's first
    chunk reads nothing)."""
    from hybridize.kernels import chunk_bwd
    cu_t = torch.tensor([0, 0, 70, 71, 200], dtype=torch.int32)
    ins = make_inputs(43, 1, 200, H, 64, 64, True, torch.bfloat16, 4, False)
    do = torch.randn(1, 200, H, 64, generator=torch.Generator().manual_seed(44))
    assert chunk_bwd.dh_qsplit(torch.bfloat16, torch.bfloat16, torch.float32, 64, True)
    grads = {}
    for level in (0, 2):
        monkeypatch.setitem(chunk_bwd.BWD_CONFIG, "dh_prefetch", str(level))
        xs = [x.clone().requires_grad_() for x in ins]
        o, ht = gated_delta_rule(*xs[:5], initial_state=xs[5], output_final_state=True, cu_seqlens=cu_t)
        ((o.float() * do).sum() + ht.sum()).backward()
        grads[level] = [x.grad for x in xs]
    assert all(torch.equal(a, b) for a, b in zip(grads[2], grads[0]))
    monkeypatch.setitem(chunk_bwd.BWD_CONFIG, "dh_prefetch", "auto")
    assert [chunk_bwd.dh_prefetch_level(bv, True) for bv in (16, 32, 64)] == [2, 2, 1]
    assert chunk_bwd.dh_prefetch_level(16, False) == 1  # Aqk^T do formed in the scan: nothing to fetch ahead
