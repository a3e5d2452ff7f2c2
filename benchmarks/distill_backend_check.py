"""Does the GPU mixer path agree with the pure-torch one? One GDN and one KDA mixer, bf16 autocast,
packed documents, forward and gradients: backend "auto" (Triton when available) vs "torch".

    python benchmarks/distill_backend_check.py [scalar] [channel]
"""
from __future__ import annotations

import torch

from hybridize.modeling.gated_delta import resolve_backend
from hybridize.modeling.mixers import GatedDeltaMixer


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12))


def main() -> None:
    dev = torch.device("cuda")
    print("auto backend:", resolve_backend("auto", dev))
    import sys
    gates = sys.argv[1:] or ["scalar", "channel"]
    for gate in gates:
        torch.manual_seed(0)
        mixer = GatedDeltaMixer(576, 9, 64, 0, gate=gate).to(dev)
        x = torch.randn(2, 2048, 576, device=dev) * 0.5
        docs = torch.cat([torch.zeros(700), torch.ones(900), torch.full((448,), 2)]).long().to(dev)[None].expand(2, -1)
        outs = {}
        for backend in ("auto", "torch"):
            mixer.backend = backend
            mixer.zero_grad()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = mixer(x, hybridize_document_ids=docs)[0]
            y.float().pow(2).mean().backward()
            outs[backend] = (y.detach(), {n: p.grad.detach().clone() for n, p in mixer.named_parameters()})
        (ya, ga), (yt, gt) = outs["auto"], outs["torch"]
        worst = max(rel(ga[n], gt[n]) for n in gt)
        print(f"{gate}: output rel err {rel(ya, yt):.2e}, worst grad rel err {worst:.2e}")


if __name__ == "__main__":
    main()
