"""Evaluate a hybrid against its teacher from Python: perplexity / agreement / KL, recall, cache and speed.

    hybridize convert smollm2-135m --ratio 3:1 -o out/smol
    python examples/eval_teacher_vs_hybrid.py out/smol
    python examples/eval_teacher_vs_hybrid.py out/smol --text "docs/**/*.md" --recall -o out/smol-eval
"""
import argparse
from pathlib import Path

from hybridize import api
from hybridize.evals import EvalOptions, RecallConfig, evaluate_models, markdown_table, run_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--text", default="stdlib", help="file, directory, glob, dataset id or 'stdlib'")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--recall", action="store_true", help="also passkey / MQAR / copying (slower)")
    parser.add_argument("-o", "--output", default=None, help="directory for the plots")
    args = parser.parse_args()

    teacher, _ = api.load_teacher(args.checkpoint)  # the model the checkpoint was converted from
    hybrid, tokenizer = api.load(args.checkpoint)
    models = {"teacher": teacher, "hybrid": hybrid}  # the first one is the reference for agreement / KL

    options = EvalOptions(text=args.text, seq_len=args.seq_len, max_tokens=args.max_tokens, recall=args.recall,
                          recall_config=RecallConfig(lengths=[256, 512], passkey_samples=1, mqar_pairs=[8],
                                                     copy_spans=[16], samples=1))
    if args.output:
        Path(args.output).mkdir(parents=True, exist_ok=True)
    report = evaluate_models(models, tokenizer, options, output=args.output)
    print(report.markdown())

    # Decode speed and cache memory at two small contexts (use `hybridize bench` on a GPU for real sizes).
    rows = run_bench(models, contexts=[128, 512], batches=[1], steps=4, max_prefill=128)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
