"""Reproducer (GPU): are a converted hybrid's logits finite with each gated-delta backend? And where does
the teacher's eager decode step spend its time?

    python benchmarks/evals_diagnose.py /tmp/smol-3to1      # a checkpoint from `hybridize convert`

Prints, per backend (triton, torch) and length, whether the logits are finite, the NLL, and the first
mixer / MLP whose output is not; then a torch.profiler table of three teacher decode steps at 2K.
(The 2026-11-23 H100 run of bench_smollm2.py saw NaN logits from the undistilled SmolLM2 hybrid with
the Triton backend, while the torch backend in bf16 on CPU stays finite on the same text.)
"""
import site
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hybridize import api  # noqa: E402
from hybridize.data import iter_documents, token_windows  # noqa: E402
from hybridize.modeling.mixers import GatedDeltaMixer  # noqa: E402


def main(checkpoint: str) -> None:
    roots = [r for r in site.getsitepackages() if list(Path(r).glob("*.dist-info/METADATA"))]
    text = f"{roots[0]}/*.dist-info/METADATA" if roots else "stdlib"
    hybrid, tok = api.load(checkpoint, dtype="bfloat16", device="cuda")
    windows = token_windows(tok, iter_documents(text, "heldout"), 2048, 4096).cuda()
    first_bad: list[str] = []

    def watch(name):
        def hook(module, args, out):
            out = out[0] if isinstance(out, tuple) else out
            if not first_bad and not torch.isfinite(out).all():
                first_bad.append(name)
        return hook

    for name, module in hybrid.named_modules():
        if name.endswith(("self_attn", "mlp")):
            module.register_forward_hook(watch(name))
    for backend in ("triton", "torch"):
        for m in hybrid.modules():
            if isinstance(m, GatedDeltaMixer):
                m.backend = backend
        for T in (512, 2048):
            first_bad.clear()
            with torch.no_grad():
                logits = hybrid(input_ids=windows[:, :T], use_cache=False).logits.float()
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), windows[:, 1:T].flatten())
            state = "finite" if torch.isfinite(logits).all() else "NOT FINITE"
            print(f"backend {backend:6} T {T:5}: {state}, nll {nll.item():.3f}, first non-finite: {first_bad[:1]}")
    del hybrid

    teacher, _ = api.load_teacher(checkpoint, dtype="bfloat16", device="cuda")
    ids = torch.randint(0, 1000, (1, 2048), device="cuda")
    one = torch.zeros(1, 1, dtype=torch.long, device="cuda")
    with torch.no_grad():
        cache = teacher(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values
        for _ in range(3):
            teacher(input_ids=one, past_key_values=cache, use_cache=True, logits_to_keep=1)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(10):
            teacher(input_ids=one, past_key_values=cache, use_cache=True, logits_to_keep=1)
        torch.cuda.synchronize()
        print(f"teacher decode step at 2K, batch 1: {(time.perf_counter() - start) * 100:.1f} ms "
              f"(attention: {teacher.config._attn_implementation})")
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                teacher(input_ids=one, past_key_values=cache, use_cache=True, logits_to_keep=1)
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=14, max_name_column_width=60))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/smol-3to1")
