"""Speed and memory of the distillation stages with random weights: does stage 2 with LoRA fit a
Llama-3-8B-shaped model on one GPU, and how many tokens/s do the stages run at?

    python benchmarks/distill_throughput.py --shape llama8b --stage kd --seq-len 4096 --steps 8
    python benchmarks/distill_throughput.py --shape smollm2 --stage attention --seq-len 2048 --batch-size 8
    accelerate launch --num_processes 2 --use_fsdp --fsdp_version 2 --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP \
        benchmarks/distill_throughput.py --shape llama8b --stage kd    # several GPUs: tokens/s over all of them

Builds the model directly on the GPU in bf16 (no download), converts 3:1 to GDN with the original
attention kept as the teacher (one copy), runs the same Trainer.distill as `hybridize distill`
(bf16 autocast, gradient checkpointing, LoRA r=16 on every other linear layer, mixers trained in
full with float32 master weights), and reports tokens/s and peak GPU memory.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


import torch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=["llama8b", "smollm2"], default="llama8b")
    ap.add_argument("--stage", choices=["attention", "kd"], default="kd")
    ap.add_argument("--mixer", choices=["gdn", "kda"], default="gdn")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--lora-rank", type=int, default=16)
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--tiny", action="store_true", help="a tiny model on the CPU: checks the script runs")
    ap.add_argument("--packed", type=int, default=0, metavar="DOCS",
                    help="pack DOCS documents per row (position_ids restart), as `hybridize distill` feeds real text")
    ap.add_argument("--profile", type=Path, default=None, metavar="FILE",
                    help="profile steps 3-5 with torch.profiler; the top operators go to FILE and stdout")
    args = ap.parse_args()

    from accelerate import Accelerator
    from transformers import LlamaConfig, LlamaForCausalLM

    from hybridize.distill import DistillOptions, Trainer, prepare_kd
    from hybridize.distill.data import Rows
    from hybridize.distill.monitor import Monitor
    from hybridize.distill.run import _float32_trainable
    from hybridize.distill.teacher import attach_teacher, student_parameters
    from hybridize.modeling import decoder_layers
    from hybridize.plans import make_plan
    from hybridize.surgery import convert

    if args.shape == "llama8b":
        config = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                             num_hidden_layers=args.layers or 32, num_attention_heads=32, num_key_value_heads=8,
                             max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False)
    else:  # SmolLM2-135M
        config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                             num_hidden_layers=args.layers or 30, num_attention_heads=9, num_key_value_heads=3,
                             max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True)
    args.layers = config.num_hidden_layers
    if args.tiny:
        config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=args.layers,
                             num_attention_heads=4, num_key_value_heads=2)
    config._attn_implementation = "sdpa"
    acc = Accelerator(mixed_precision="no" if args.tiny else "bf16", cpu=args.tiny)
    device = acc.device  # under accelerate launch, this process's GPU
    t0 = time.perf_counter()
    with torch.device(device):
        torch.set_default_dtype(torch.float32 if args.tiny else torch.bfloat16)
        model = LlamaForCausalLM(config)  # random init on the GPU
        torch.set_default_dtype(torch.float32)
    plan = make_plan(args.layers, ratio="3:1", mixer=args.mixer)
    layers = decoder_layers(model)
    originals = {i: layers[i].self_attn for i, m in enumerate(plan.mixers) if m == args.mixer}
    hybrid = convert(model, plan)  # the originals stay alive through `originals`: they become the teacher
    attach_teacher(hybrid, modules=originals)
    from hybridize.distill.run import set_backend
    set_backend(hybrid, args.backend)
    del originals
    hybrid.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False}) \
        if not args.no_checkpointing else None
    build_s = time.perf_counter() - t0
    params = sum(p.numel() for p in hybrid.parameters())

    run = Path(tempfile.mkdtemp())
    opts = DistillOptions(model="random", output=str(run / "out"), seq_len=args.seq_len, batch_size=args.batch_size,
                          checkpoint_every=10**9, log_every=1, run_dir=str(run),
                          kd={"tokens": args.steps * args.batch_size * args.seq_len, "lr": 1e-4, "train": "lora",
                              "lora_rank": args.lora_rank, "warmup": 0.0})
    if args.stage == "kd":
        model = prepare_kd(hybrid, opts.kd)
        _float32_trainable(model)
    else:
        model = hybrid
        opts.attention.tokens = opts.kd.tokens
        opts.stages = ["attention"]
        for p in model.parameters():
            p.requires_grad_(False)
        for _, p in student_parameters(model):
            p.requires_grad_(True)
        _float32_trainable(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    gen = torch.Generator().manual_seed(0)
    n = args.steps * args.batch_size * acc.num_processes  # each process reads its own rows of a step
    positions = torch.arange(args.seq_len).expand(n, -1).contiguous()
    if args.packed > 1:  # documents of random lengths: positions restart at every start
        for row in positions:
            starts = torch.randperm(args.seq_len - 1, generator=gen)[: args.packed - 1] + 1
            for s in starts.sort().values.tolist():
                row[s:] = torch.arange(args.seq_len - s)
    rows = Rows(torch.randint(0, config.vocab_size, (n, args.seq_len), generator=gen), positions)
    if not args.tiny:
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(model, opts, acc, Monitor(run, enabled=acc.is_main_process))
    profiler = _profiler(trainer) if args.profile else None
    result = trainer.distill(rows) if args.stage == "kd" else trainer.attention_transfer(rows)
    if profiler is not None:
        _report_profile(profiler, args.profile)
    if not acc.is_main_process:
        return
    # First step includes compilation / autotuning: the speed is taken over the later steps.
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steady = [r["tokens_per_s"] for r in recs[1:]] or [recs[0]["tokens_per_s"]]
    out = {
        "device": "cpu" if args.tiny else torch.cuda.get_device_name(), "shape": args.shape, "stage": args.stage,
        "mixer": args.mixer, "backend": args.backend if args.backend != "auto" else _backend(), "layers": args.layers, "seq_len": args.seq_len,
        "batch_size": args.batch_size, "steps": args.steps, "lora_rank": args.lora_rank,
        "gradient_checkpointing": not args.no_checkpointing, "params_total": params, "params_trainable": trainable,
        "build_s": round(build_s, 1), "peak_memory_gib": round(result.peak_memory / 2**30, 2),
        "tokens_per_s_median": sorted(steady)[len(steady) // 2], "losses": result.losses,
        "torch": torch.__version__, "processes": acc.num_processes, "distributed": str(acc.distributed_type),
    }
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    what = f"stage 2 + LoRA r{args.lora_rank}" if args.stage == "kd" else "stage 1"
    print(f"| {args.shape} 3:1 {args.mixer}, {what} | seq {args.seq_len} x {args.batch_size} | "
          f"{out['tokens_per_s_median']:,.0f} tok/s | peak {out['peak_memory_gib']} GiB | trainable {trainable/1e9:.2f}B |",
          file=sys.stderr)


PROFILED_STEPS = 3


def _profiler(trainer):
    """Records steps 3-5 (after compilation); Trainer.on_step advances it."""
    from torch.profiler import ProfilerActivity, profile, schedule
    prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                   schedule=schedule(wait=2, warmup=0, active=PROFILED_STEPS, repeat=1))
    prof.__enter__()
    trainer.on_step = lambda stage, step: prof.step()
    return prof


def _report_profile(prof, path: Path) -> None:
    prof.__exit__(None, None, None)
    events = prof.key_averages()
    ops = [e for e in events if not e.key.startswith("ProfilerStep")]  # the step markers span all the rest
    cuda = sum(e.self_device_time_total for e in ops) / PROFILED_STEPS / 1e3
    cpu = sum(e.self_cpu_time_total for e in ops) / PROFILED_STEPS / 1e3
    text = (f"per step: GPU busy {cuda:.1f} ms, CPU (self, all threads) {cpu:.1f} ms\n"
            + events.table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=60) + "\n"
            + events.table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=60))
    path.write_text(text)
    print(text)


def _backend() -> str:
    from hybridize.modeling.gated_delta import resolve_backend
    return resolve_backend("auto", torch.device("cuda" if torch.cuda.is_available() else "cpu"))


if __name__ == "__main__":
    main()
