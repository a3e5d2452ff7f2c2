"""GPU demonstration: SmolLM2-135M-Instruct against its 3:1 hybrid — quality and efficiency.

    python benchmarks/bench_smollm2.py --model "$HYBRIDIZE_DEVICE_MODEL" --out "$OUT"
    python benchmarks/bench_smollm2.py --checkpoint out/smol-distilled --out results/   # a distilled one

Writes under --out: eval/report.{json,md}, eval/context.png, eval/passkey.png, bench/bench.{json,md,png},
and prints the goal checks last:
    cache of the hybrid at 32K <= 30% of the teacher's;  decode at 32K, batch 16 >= 2x the teacher's;
    decode at short context (2K) within a stated margin of the teacher's.
Held-out text: the `*.dist-info/METADATA` files of this interpreter's site-packages (held-out split).
"""
from __future__ import annotations

import argparse
import json
import site
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hybridize import api  # noqa: E402
from hybridize.evals import bench as bench_mod  # noqa: E402
from hybridize.evals.recall import RecallConfig  # noqa: E402
from hybridize.evals.suite import EvalOptions, evaluate_models  # noqa: E402
from hybridize.modeling.mixers import GatedDeltaMixer  # noqa: E402
from hybridize.plans import human_bytes, parse_tokens  # noqa: E402

SHORT_CONTEXT_MARGIN = 0.25  # the hybrid's decode at 2K may be at most 25% slower than the teacher's


def metadata_glob() -> str:
    for root in site.getsitepackages():
        if list(Path(root).glob("*.dist-info/METADATA")):
            return f"{root}/*.dist-info/METADATA"
    return "stdlib"


def sizes(text: str) -> list[int]:
    return [parse_tokens(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", help="teacher: alias, .gguf, dir (used to convert)")
    ap.add_argument("--checkpoint", default=None, help="an existing hybrid checkpoint (skips conversion)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--text", default=None, help="held-out text spec (default: site-packages METADATA files)")
    ap.add_argument("--contexts", default="2K,8K,32K,128K")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--max-prefill", default="8K")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--backend", default="auto", help="gated delta rule backend: auto, triton, torch")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: a CPU check that the script runs")
    args = ap.parse_args()
    out = Path(args.out)
    (out / "eval").mkdir(parents=True, exist_ok=True)
    (out / "bench").mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device: {torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}; torch {torch.__version__}")

    start = time.perf_counter()
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = "/tmp/smol-3to1"
        plan = api.plan(args.model, ratio="3:1")
        report = api.convert(args.model, plan, checkpoint, force=True)
        print(f"converted in {report.seconds:.0f} s; full layers {plan.full_layers}")
    teacher, _ = api.load_teacher(checkpoint, teacher=None if args.checkpoint else args.model,
                                  dtype="bfloat16", device=device)
    hybrid, tokenizer = api.load(checkpoint, dtype="bfloat16", device=device)
    mixers = [m for m in hybrid.modules() if isinstance(m, GatedDeltaMixer)]
    for m in mixers:
        m.backend = args.backend
    from hybridize.modeling.gated_delta import resolve_backend
    used = resolve_backend(args.backend, torch.device(device))
    print(f"hybrid: {len(mixers)} linear layers, gated delta rule backend {args.backend!r} -> {used!r}")
    models = {"teacher": teacher, "hybrid": hybrid}

    summary = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "backend": used,
               "checkpoint": str(args.checkpoint or f"{args.model} converted 3:1 (not distilled)")}
    if not args.skip_eval:
        text = args.text or metadata_glob()
        opts = EvalOptions(text=text, seq_len=2048, max_tokens=65536, batch_size=4,
                           contexts=[512, 1024, 2048, 4096, 8192], context_tokens=32768, recall=True,
                           recall_config=RecallConfig(lengths=[1024, 2048, 4096, 8192], passkey_samples=2,
                                                      mqar_pairs=[8, 32, 64], copy_spans=[16, 64, 256], samples=4))
        if args.smoke:
            opts = EvalOptions(text=text, seq_len=128, max_tokens=512, contexts=[256], context_tokens=256, recall=True,
                               recall_config=RecallConfig(lengths=[256], depths=[0.5], passkey_samples=1,
                                                          mqar_pairs=[4], copy_spans=[8], samples=1))
        t = time.perf_counter()
        report = evaluate_models(models, tokenizer, opts, output=out / "eval")
        (out / "eval" / "report.json").write_text(report.to_json())
        (out / "eval" / "report.md").write_text(report.markdown() + "\n")
        print(report.markdown())
        print(f"eval took {time.perf_counter() - t:.0f} s")

    if args.skip_bench:
        return
    t = time.perf_counter()
    rows = bench_mod.run_bench(models, sizes(args.contexts), sizes(args.batches), steps=args.steps,
                               max_prefill=parse_tokens(args.max_prefill),
                               on_row=lambda r: print(r, flush=True))
    table = bench_mod.markdown_table(rows)
    (out / "bench" / "bench.md").write_text(table + "\n")
    bench_mod.plot_bench(rows, out / "bench" / "bench.png")
    print(table)
    print(f"bench took {time.perf_counter() - t:.0f} s")

    def row(model, context, batch):
        return next((r for r in rows if r.model == model and r.context == context and r.batch == batch), None)

    goals = []
    t32, h32 = row("teacher", 32768, 16), row("hybrid", 32768, 16)
    if t32 and h32:
        measured = lambda r: r.cache_allocated or r.cache_bytes  # noqa: E731
        if h32.status == "ok" and t32.status == "ok":
            ratio = measured(h32) / measured(t32)
            goals.append(f"cache at 32K (measured, allocator): hybrid {human_bytes(measured(h32))} vs teacher "
                         f"{human_bytes(measured(t32))} = {ratio:.1%} (goal <= 30%): {'MET' if ratio <= 0.30 else 'MISSED'}")
            speed = h32.decode_tok_s / t32.decode_tok_s
            goals.append(f"decode at 32K batch 16: hybrid {h32.decode_tok_s:,.0f} vs teacher {t32.decode_tok_s:,.0f} "
                         f"tok/s = {speed:.2f}x (goal >= 2x): {'MET' if speed >= 2 else 'MISSED'}")
    for b in sizes(args.batches):
        ts, hs = row("teacher", 2048, b), row("hybrid", 2048, b)
        if ts and hs and ts.status == hs.status == "ok":
            speed = hs.decode_tok_s / ts.decode_tok_s
            goals.append(f"decode at 2K batch {b}: {speed:.2f}x the teacher (margin: at least "
                         f"{1 - SHORT_CONTEXT_MARGIN:.2f}x): {'MET' if speed >= 1 - SHORT_CONTEXT_MARGIN else 'MISSED'}")
    summary["goals"] = goals
    summary["bench"] = [r.to_dict() for r in rows]
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\ntotal {time.perf_counter() - start:.0f} s; device {summary['device']}; backend {used}")
    print("\n".join(goals))


if __name__ == "__main__":
    main()
