"""SmolLM2-135M-Instruct, 3:1 hybrid, distilled on a local corpus: how much of the teacher's
perplexity comes back, for how many tokens, how fast, in how much memory.

On the GPU machine (see benchmarks/RESULTS.md for the exact calls):
    python benchmarks/distill_smollm2.py --gguf $HYBRIDIZE_DEVICE_MODEL --mixer gdn \\
        --attention-tokens 4M --attention-minutes 2.5 --kd-tokens 20M --kd-minutes 4 --json $OUT/gdn.json

Data: the machine's site-packages, every `*.py` file and every `*.dist-info/METADATA`, split by file
(10% of files held out). Stage 1 and stage 2 run as two `distill` calls (each stage runs alone from
a checkpoint), so the figures after each stage come from the same code a user runs.
"""
from __future__ import annotations

import argparse
import json
import site
import time
from pathlib import Path

import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--mixer", default="gdn", choices=["gdn", "kda"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/distill-work"))
    ap.add_argument("--data", nargs="*", default=None, help="default: site-packages .py + METADATA")
    ap.add_argument("--attention-tokens", default="4M")
    ap.add_argument("--attention-minutes", type=float, default=0)
    ap.add_argument("--attention-lr", type=float, default=1e-3)
    ap.add_argument("--kd-tokens", default="20M")
    ap.add_argument("--kd-minutes", type=float, default=0)
    ap.add_argument("--kd-lr", type=float, default=3e-4)
    ap.add_argument("--lora-lr", type=float, default=3e-4)
    ap.add_argument("--train", default="lora")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--eval-tokens", default="256K")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--skip-kd", action="store_true")
    ap.add_argument("--prepare-only", action="store_true",
                    help="only write WORK/teacher and WORK/smol-MIXER (for a `hybridize distill` run of its own)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from hybridize import api
    from hybridize.distill import DistillOptions, distill
    from hybridize.sources import load_model, resolve

    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    teacher = args.work / "teacher"
    if not (teacher / "config.json").is_file():  # de-quantise the GGUF once, keep it as safetensors
        model, tok = load_model(resolve(args.gguf), dtype="float32")
        model.hf_quantizer = None  # the weights are de-quantised float32 tensors by now
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(teacher)
        tok.save_pretrained(teacher)
        del model
    converted = args.work / f"smol-{args.mixer}"
    plan = api.plan(str(teacher), ratio="3:1", mixer=args.mixer)
    api.convert(str(teacher), plan, converted, dtype="float32", force=True)
    sp = site.getsitepackages()[0]
    data = args.data or [f"{sp}/**/*.py", f"{sp}/*.dist-info/METADATA"]
    setup_s = time.perf_counter() - t0
    if args.prepare_only:
        print(f"teacher {teacher}, converted {converted} ({setup_s:.0f} s)")
        return

    common = dict(data=data, seq_len=args.seq_len, batch_size=args.batch_size, eval_tokens=args.eval_tokens,
                  checkpoint_every=10**6, log_every=10, force=True, backend=args.backend, teacher=str(teacher))
    stage1_out = args.work / f"s1-{args.mixer}"
    r1 = distill(DistillOptions.from_dict(dict(
        common, model=str(converted), output=str(stage1_out), stages=["attention"],
        attention={"tokens": args.attention_tokens, "lr": args.attention_lr, "max_minutes": args.attention_minutes})))
    results = {"mixer": args.mixer, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
               "setup_s": round(setup_s, 1), "data": data, "backend": args.backend,
               "evaluation": {"before": r1.evaluation["before"], "attention": r1.evaluation["attention"]},
               "stages": {"attention": _stage(r1.stages["attention"])}, "args": {k: str(v) for k, v in vars(args).items()}}
    if not args.skip_kd:
        r2 = distill(DistillOptions.from_dict(dict(
            common, model=str(stage1_out), output=str(args.work / f"s2-{args.mixer}"), stages=["kd"],
            kd={"tokens": args.kd_tokens, "lr": args.kd_lr, "lora_lr": args.lora_lr, "train": args.train,
                "max_minutes": args.kd_minutes})))
        results["evaluation"]["kd"] = r2.evaluation["kd"]
        results["stages"]["kd"] = _stage(r2.stages["kd"])
    results["total_s"] = round(time.perf_counter() - t0, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    _table(results)


def _stage(r) -> dict:
    return {"steps": r.steps, "tokens": r.tokens, "seconds": round(r.seconds, 1),
            "tokens_per_s": round(r.tokens / max(r.seconds, 1e-9)), "peak_memory_gib": round(r.peak_memory / 2**30, 2),
            "final_loss": r.final_loss}


def _table(res: dict) -> None:
    e = res["evaluation"]
    teacher = e["before"]["teacher_ppl"]
    print(f"\n{res['mixer']} 3:1 on {res['device']} (held-out {e['before']['tokens']:,} tokens, windows of "
          f"{res['args']['seq_len']})")
    print("| model | perplexity | vs teacher | top-1 agreement | KL |")
    print("|---|---|---|---|---|")
    print(f"| teacher | {teacher:.3f} | 1.000 | | |")
    for key, label in (("before", "converted"), ("attention", "after stage 1"), ("kd", "after stage 2")):
        if key in e:
            x = e[key]
            print(f"| {label} | {x['ppl']:.3f} | {x['ppl'] / teacher:.3f} | {x['top1_agreement']:.1%} | {x['kl']:.4f} |")
    print("| stage | tokens | seconds | tokens/s | peak GiB |")
    print("|---|---|---|---|---|")
    for s, x in res["stages"].items():
        print(f"| {s} | {x['tokens']:,} | {x['seconds']} | {x['tokens_per_s']:,} | {x['peak_memory_gib']} |")
    print(f"setup {res['setup_s']} s, total {res['total_s']} s")


if __name__ == "__main__":
    main()
