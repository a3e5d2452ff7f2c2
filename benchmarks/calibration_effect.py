"""CPU: how much the output-scale calibration of `convert` helps an undistilled hybrid.

    python benchmarks/calibration_effect.py        # SmolLM2-135M 3:1, ~2 minutes on 2 cores

Perplexity on 4 x 512 tokens of asyncio/tasks.py (not part of the calibration text) for the teacher,
the hybrid converted without calibration, and with the default 512 calibration tokens.
"""
import copy
import inspect
import math

import asyncio.tasks
import torch

from hybridize.calibration import calibration_ids
from hybridize.plans import make_plan
from hybridize.sources import load_model, resolve
from hybridize.surgery import convert


def perplexity(model, ids) -> float:
    with torch.no_grad():
        return math.exp(model(ids, labels=ids, use_cache=False).loss.item())


def main() -> None:
    model, tokenizer = load_model(resolve("smollm2-135m"))
    ids = tokenizer(inspect.getsource(asyncio.tasks), return_tensors="pt").input_ids[:, :2048].view(4, 512)
    print(f"teacher                 {perplexity(model, ids):12.2f}")
    plan = make_plan(model.config.num_hidden_layers, ratio="3:1")
    for label, cal in (("3:1 plain", None), ("3:1 calibrated (512)", calibration_ids(tokenizer, 512))):
        hybrid = convert(copy.deepcopy(model), plan, calibration_ids=cal)
        print(f"{label:<23} {perplexity(hybrid, ids):12.2f}")


if __name__ == "__main__":
    main()
