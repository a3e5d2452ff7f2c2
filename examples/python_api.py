"""The Python API end to end: plan -> convert -> load -> generate.

    python examples/python_api.py                      # SmolLM2-135M-Instruct (no Hub needed)
    python examples/python_api.py path/to/model -o out/example
"""
import argparse

import torch

import hybridize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="smollm2-135m")
    parser.add_argument("-o", "--output", default="out/example-3to1")
    args = parser.parse_args()

    plan = hybridize.plan(args.model, ratio="3:1")  # full attention every 4th layer, last layer full
    print("full attention layers:", plan.full_layers)
    report = hybridize.convert(args.model, plan, output=args.output, force=True)
    print(f"converted in {report.seconds:.1f} s -> {report.output}")

    model, tokenizer = hybridize.load(report.output)
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    print("generated:", tokenizer.decode(out[0, inputs["input_ids"].shape[1]:]))


if __name__ == "__main__":
    main()
