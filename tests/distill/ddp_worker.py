"""Run by test_ddp.py under torchrun: one distillation run, then each rank prints a weight checksum.

    ddp_worker.py HYBRID CORPUS OUT [--fsdp] [--stop-at-kd N]

--fsdp: FSDP2 through accelerate. accelerate turns FSDP on only for GPUs (on the CPU it stays
MULTI_CPU), so the worker sets the distributed type as accelerate's launcher would on GPUs; the
sharding itself (DTensors over gloo, accelerate's fsdp2 prepare) is the real one.
--stop-at-kd N: stop (as SIGTERM does) after stage-2 step N; run again with --resume after it.
--bf16: bf16 autocast and bfloat16 frozen weights, as on GPUs.
"""
import json
import os
import signal
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root: tests is a package
from tests.distill.distill_helpers import small_options  # noqa: E402

from hybridize.distill import distill  # noqa: E402
from hybridize.errors import Stopped  # noqa: E402


def accelerator(fsdp: bool, bf16: bool):
    from accelerate import Accelerator
    if not fsdp:
        return Accelerator()
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
    acc = Accelerator(mixed_precision="bf16" if bf16 else "no")
    # What `accelerate launch --use_fsdp` exports; transformers reads it when loading (set after
    # the Accelerator, which would otherwise build a GPU-only FSDP plugin on its own).
    os.environ.update(ACCELERATE_USE_FSDP="true", FSDP_CPU_RAM_EFFICIENT_LOADING="true")
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    AcceleratorState._shared_state["distributed_type"] = DistributedType.FSDP
    # One FSDP unit per decoder layer, as `--fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP` does.
    acc.state.fsdp_plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    if bf16:  # as accelerate's state does for FSDP on GPUs
        acc.state.fsdp_plugin.set_mixed_precision("bf16")
    return acc


hybrid, corpus, out = sys.argv[1:4]
fsdp, resume, bf16 = "--fsdp" in sys.argv, "--resume" in sys.argv, "--bf16" in sys.argv
stop_at = int(sys.argv[sys.argv.index("--stop-at-kd") + 1]) if "--stop-at-kd" in sys.argv else None


def on_step(stage, done):
    if stop_at is not None and (stage, done) == ("kd", stop_at):
        os.kill(os.getpid(), signal.SIGTERM)


def report_line(tag: str, payload: dict) -> None:
    """One write() per line: both ranks share torchrun's stdout pipe, and print() writes the text and
    its newline separately, so two ranks finishing together could interleave onto one line (the
    test's occasional JSON "Extra data" failure). A pipe write under PIPE_BUF bytes is atomic."""
    sys.stdout.flush()
    os.write(1, f"{tag} {json.dumps(payload)}\n".encode())


try:
    extra = dict(precision="bf16", dtype="bfloat16") if bf16 else {}
    report = distill(small_options(Path(hybrid), Path(corpus), Path(out), resume=resume, **extra), on_step=on_step,
                     accelerator=accelerator(fsdp, bf16))
except Stopped as err:
    report_line("STOPPED", {"rank": torch.distributed.get_rank(), "message": str(err)})
    torch.distributed.destroy_process_group()
    sys.exit(0)
rank = torch.distributed.get_rank()
# Under FSDP2 only the main process rebuilds the whole model to save it.
checksum = sum(float(v.double().sum()) for v in report.model.state_dict().values()) if report.model else None
report_line("RESULT", {"rank": rank, "world": torch.distributed.get_world_size(), "checksum": checksum,
                      "kl": report.evaluation["kd"]["kl"],
                      "teacher_ppl": [report.evaluation[e]["teacher_ppl"] for e in ("before", "attention", "kd")]})
# Leave the process group before the interpreter exits: left to static destruction, gloo's threads
# under FSDP2 once aborted a rank at exit ("terminate called without an active exception") after a
# run that had finished and reported.
torch.distributed.barrier()
torch.distributed.destroy_process_group()
