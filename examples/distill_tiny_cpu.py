"""Distil a tiny hybrid on the CPU in about a minute: the whole `hybridize distill` flow, small.

    python examples/distill_tiny_cpu.py out/tiny-demo

1. a small random Llama (the "original model") with a character tokenizer is saved to OUT/teacher;
2. it is converted 3:1 to Gated DeltaNet (`hybridize.api.convert`);
3. `hybridize.distill.distill` runs attention transfer, then KD with LoRA, on Python's stdlib sources;
4. the distilled checkpoint loads with `hybridize.api.load`.
The same options in YAML drive the CLI:  hybridize distill --config distill.yaml
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from hybridize import api
from hybridize.distill import DistillOptions, distill
from hybridize.plans import make_plan


def char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<unk>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate([chr(i) for i in range(32, 127)] + ["\n"])}}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", eos_token="<eos>")


def main(out: Path) -> None:
    teacher = out / "teacher"
    if not teacher.exists():
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=128, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2, eos_token_id=1, bos_token_id=1)
        LlamaForCausalLM(config).save_pretrained(teacher)
        char_tokenizer().save_pretrained(teacher)
    plan = make_plan(4, ratio="3:1", mixer="gdn")
    api.convert(str(teacher), plan, out / "converted", force=True)
    options = DistillOptions(
        model=str(out / "converted"), output=str(out / "distilled"), data="stdlib", force=True,
        seq_len=128, batch_size=4, eval_tokens=4096, log_every=5, checkpoint_every=20,
        attention={"tokens": 40 * 512, "lr": 1e-3}, kd={"tokens": 40 * 512, "lr": 1e-3, "train": "lora", "lora_rank": 8},
    )
    report = distill(options)
    model, _ = api.load(report.output)
    for name, e in report.evaluation.items():
        print(f"{name:>10}: perplexity {e['ppl']:.2f} (original {e['teacher_ppl']:.2f}), "
              f"top-1 agreement {e['top1_agreement']:.1%}")
    print(f"distilled checkpoint: {report.output} ({sum(p.numel() for p in model.parameters()):,} parameters)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/tiny-demo"))
