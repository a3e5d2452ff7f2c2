"""Distillation: recover the original model's quality in a converted hybrid.

Stage 1, attention transfer: each converted layer learns to reproduce the original attention's
output on the same inputs (one teacher forward feeds every layer). Stage 2, end-to-end KD: the
student's next-token distribution matches the teacher's (forward KL), training the mixers and
optionally LoRA adapters on the rest. One copy of the model plays both roles (see teacher.py).

    from hybridize.distill import DistillOptions, distill
    report = distill(DistillOptions(model="out/smol-3to1", data="stdlib", output="out/smol-distilled"))
"""
from .options import AttentionOptions, DistillOptions, KDOptions, OptionsError
from .run import DistillReport, distill, finish_model, prepare_kd
from .teacher import AttentionSwitch, attach_teacher, detach_teacher, teacher_mode
from .trainer import DivergedError, Trainer

__all__ = ["AttentionOptions", "AttentionSwitch", "DistillOptions", "DistillReport", "DivergedError", "KDOptions",
           "OptionsError", "Trainer", "attach_teacher", "detach_teacher", "distill", "finish_model", "prepare_kd",
           "teacher_mode"]
