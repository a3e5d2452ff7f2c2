"""Run by test_ddp.py under torchrun: one distillation run, then each rank prints a weight checksum."""
import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: tests is a package
from tests.distill.distill_helpers import small_options  # noqa: E402

from hybridize.distill import distill  # noqa: E402

hybrid, corpus, out = sys.argv[1:4]
report = distill(small_options(Path(hybrid), Path(corpus), Path(out)))
rank = torch.distributed.get_rank()
checksum = sum(float(v.double().sum()) for v in report.model.state_dict().values())
print("RESULT " + json.dumps({"rank": rank, "world": torch.distributed.get_world_size(), "checksum": checksum,
                              "kl": report.evaluation["kd"]["kl"]}), flush=True)
