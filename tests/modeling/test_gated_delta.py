"""The chunked gated delta rule against the naive recurrence, in float64."""
from __future__ import annotations

import pytest
import torch

from hybridize.modeling.gated_delta import (chunk_gated_delta_rule, gated_delta_rule, l2norm,
                                            recurrent_gated_delta_rule)


def random_inputs(B, T, H, K, V, channel, seed, requires_grad=False, n_states=None):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, K, generator=g, dtype=torch.float64)
    k = torch.randn(B, T, H, K, generator=g, dtype=torch.float64)
    v = torch.randn(B, T, H, V, generator=g, dtype=torch.float64)
    # Per-channel gates are bounded below (KDA's gate lies in (-5, 0)); scalar gates are not.
    gate = -5 * torch.rand(B, T, H, K, generator=g, dtype=torch.float64) if channel else \
        -torch.rand(B, T, H, generator=g, dtype=torch.float64).mul(4).exp().mul(0.1)
    beta = torch.rand(B, T, H, generator=g, dtype=torch.float64)
    state = torch.randn(n_states or B, H, K, V, generator=g, dtype=torch.float64)
    tensors = [q, k, v, gate, beta, state]
    for t in tensors:
        t.requires_grad_(requires_grad)
    return tensors


@pytest.mark.parametrize("channel", [False, True], ids=["gdn", "kda"])
@pytest.mark.parametrize("T", [1, 5, 16, 63, 64, 65, 150])
def test_chunked_equals_recurrent(channel, T):
    q, k, v, g, beta, s0 = random_inputs(2, T, 3, 8, 6, channel, seed=T)
    o_ref, s_ref = recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                              use_qk_l2norm=True)
    o, s = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True, use_qk_l2norm=True)
    torch.testing.assert_close(o, o_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("channel", [False, True], ids=["gdn", "kda"])
def test_gradients_match(channel):
    inputs = random_inputs(1, 37, 2, 8, 4, channel, seed=1, requires_grad=True)
    grads = []
    for rule in (recurrent_gated_delta_rule, chunk_gated_delta_rule):
        q, k, v, g, beta, s0 = inputs
        o, s = rule(q, k, v, g, beta, initial_state=s0, output_final_state=True, use_qk_l2norm=True)
        weight = torch.randn_like(o, generator=torch.Generator().manual_seed(5))
        loss = (o * weight).sum() + s.pow(2).sum()
        grads.append(torch.autograd.grad(loss, inputs))
    for name, a, b in zip("q k v g beta state".split(), *grads):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9, msg=f"gradient of {name}")


@pytest.mark.parametrize("channel", [False, True], ids=["gdn", "kda"])
def test_varlen_resets_state_per_document(channel):
    lengths = [7, 64, 1, 30]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    q, k, v, g, beta, s0 = random_inputs(1, sum(lengths), 2, 8, 4, channel, seed=3, n_states=len(lengths))
    o, s = chunk_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True, cu_seqlens=cu)
    o_rec, s_rec = recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0, output_final_state=True,
                                              cu_seqlens=cu)
    torch.testing.assert_close(o, o_rec, rtol=1e-10, atol=1e-10)
    for i, (a, b) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):  # each document alone
        part = slice(a, b)
        o_i, s_i = recurrent_gated_delta_rule(q[:, part], k[:, part], v[:, part], g[:, part], beta[:, part],
                                              initial_state=s0[i:i + 1], output_final_state=True)
        torch.testing.assert_close(o[:, part], o_i, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(s[i:i + 1], s_i, rtol=1e-10, atol=1e-10)


def test_recurrence_matches_its_definition():
    """One hand-written step: S = e^g S; u = beta (v - S^T k); S += k u^T; o = S^T (scale q)."""
    q, k, v, g, beta, s0 = random_inputs(1, 1, 1, 4, 3, False, seed=9)
    o, s = recurrent_gated_delta_rule(q, k, v, g, beta, scale=0.7, initial_state=s0, output_final_state=True)
    S = s0[0, 0] * g[0, 0, 0].exp()
    u = beta[0, 0, 0] * (v[0, 0, 0] - S.T @ k[0, 0, 0])
    S = S + torch.outer(k[0, 0, 0], u)
    torch.testing.assert_close(s[0, 0], S)
    torch.testing.assert_close(o[0, 0, 0], S.T @ (0.7 * q[0, 0, 0]))


def test_low_precision_inputs_accumulate_in_float32():
    q, k, v, g, beta, s0 = random_inputs(1, 100, 2, 16, 16, False, seed=4)
    ref, _ = recurrent_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm=True)
    o, _ = gated_delta_rule(q.bfloat16(), k.bfloat16(), v.bfloat16(), g.float(), beta.float(), use_qk_l2norm=True,
                            backend="torch")
    assert o.dtype == torch.bfloat16
    rel = (o.double() - ref).norm() / ref.norm()
    assert rel < 2e-2, rel


def test_l2norm_unit_length():
    x = torch.randn(5, 7, dtype=torch.float64)
    torch.testing.assert_close(l2norm(x).norm(dim=-1), torch.ones(5, dtype=torch.float64), rtol=1e-6, atol=1e-6)


def test_bad_shapes_are_rejected():
    q, k, v, g, beta, s0 = random_inputs(2, 5, 2, 4, 4, False, seed=0)
    with pytest.raises(ValueError, match="g must be"):
        recurrent_gated_delta_rule(q, k, v, g[..., None, None], beta)
    with pytest.raises(ValueError, match="cu_seqlens"):
        chunk_gated_delta_rule(q, k, v, g, beta, cu_seqlens=torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="unknown backend"):
        gated_delta_rule(q, k, v, g, beta, backend="cuda-magic")


def test_strong_decay_leaves_no_denormals():
    """exp() of very negative cumulative decays must not produce float32 denormals (they slow CPU
    matrix products 20-80x); the results stay those of the recurrence."""
    q, k, v, _, beta, s0 = random_inputs(1, 80, 2, 8, 4, False, seed=6)
    g = torch.full((1, 80, 2), -3.0, dtype=torch.float64)  # exp(G) reaches exp(-192) inside a chunk
    o, s = chunk_gated_delta_rule(q.float(), k.float(), v.float(), g.float(), beta.float(), initial_state=s0.float(),
                                  output_final_state=True)
    tiny = torch.finfo(torch.float32).tiny
    assert not ((o != 0) & (o.abs() < tiny)).any() and not ((s != 0) & (s.abs() < tiny)).any()
    ref, _ = recurrent_gated_delta_rule(q, k, v, g, beta, initial_state=s0)
    torch.testing.assert_close(o.double(), ref, rtol=1e-4, atol=1e-5)
