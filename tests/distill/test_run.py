"""Whole runs on a tiny model (CPU): losses fall, resume is exact, divergence stops cleanly, LoRA
merges exactly, and the output is a checkpoint that hybridize.api.load reads back."""
from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from hybridize import api
from hybridize.distill import DivergedError, distill, finish_model, prepare_kd
from hybridize.distill.checkpoint import ResumeError
from hybridize.errors import Stopped
from hybridize.distill.options import KDOptions
from hybridize.distill.teacher import attach_teacher, student_parameters, teacher_mode

from .distill_helpers import small_options


def _train_losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], r["loss"]) for r in rows if "loss" in r]


@pytest.fixture(scope="module")
def full_run(hybrid_dir, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    return distill(small_options(hybrid_dir, corpus, out))


def _stage1_heldout_losses(hybrid_dir, teacher_dir, corpus, run_dir):
    """Held-out normalised MSE of the converted layers before stage 1 and with its final weights."""
    from hybridize.distill.checkpoint import final_dir, load_checkpoint
    from hybridize.distill.data import heldout_rows
    from hybridize.distill.evaluate import transfer_loss
    model, tokenizer = api.load(hybrid_dir)
    attach_teacher(model, str(teacher_dir))
    rows = heldout_rows(tokenizer, str(corpus), tokens=512, seq_len=64, heldout_fraction=0.2)
    before = transfer_loss(model, rows, batch_size=4, device=torch.device("cpu"))
    load_checkpoint(final_dir(run_dir / "checkpoints", "attention"), model)
    return before, transfer_loss(model, rows, batch_size=4, device=torch.device("cpu"))


def test_both_stages_reduce_their_losses_and_the_gap_to_the_teacher(full_run, hybrid_dir, teacher_dir, corpus):
    losses = _train_losses(full_run.run_dir)
    assert [n for s, n, _ in losses if s == "attention"] == list(range(1, 13))
    # Stage 1's objective on held-out text: every converted layer closer to the original attention.
    before, after = _stage1_heldout_losses(hybrid_dir, teacher_dir, corpus, full_run.run_dir)
    assert after < 0.8 * before
    # Stage 2's objective: training KL falls, and the held-out KL falls after each stage.
    kd = [x for s, _, x in losses if s == "kd"]
    assert sum(kd[-3:]) < sum(kd[:3])
    e = full_run.evaluation
    assert e["kd"]["kl"] < e["attention"]["kl"] < e["before"]["kl"]
    assert (full_run.run_dir / "loss.png").stat().st_size > 1000


def test_output_is_a_checkpoint_that_loads_and_matches(full_run, hybrid_dir):
    loaded, _ = api.load(full_run.output)
    converted, _ = api.load(hybrid_dir)
    assert set(loaded.state_dict()) == set(converted.state_dict())  # LoRA merged, teacher dropped
    ids = torch.randint(2, 98, (2, 48), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, full_run.model(ids).logits, atol=1e-5)
        assert not torch.allclose(loaded(ids).logits, converted(ids).logits, atol=1e-3)
    card = (full_run.output / "README.md").read_text()
    assert "perplexity, after distillation" in card and "top-1 agreement" in card
    for name in ("metrics.jsonl", "loss.png", "options.yaml", "plan.yaml"):
        assert (full_run.output / name).is_file()
    assert api.teacher_source(full_run.output) == api.teacher_source(hybrid_dir)


class Interrupt(Exception):
    pass


def _stop_at(stage, step):
    def on_step(s, done):
        if (s, done) == (stage, step):
            raise Interrupt
    return on_step


def _signal_at(stage, step):
    def on_step(s, done):
        if (s, done) == (stage, step):
            os.kill(os.getpid(), signal.SIGTERM)
    return on_step


def test_resume_after_interruptions_is_exact(full_run, hybrid_dir, corpus, tmp_path):
    out = tmp_path / "interrupted"
    with pytest.raises(Interrupt):  # mid stage 1; last checkpoint at step 6
        distill(small_options(hybrid_dir, corpus, out), on_step=_stop_at("attention", 7))
    with pytest.raises(ResumeError, match="--resume"):
        distill(small_options(hybrid_dir, corpus, out))
    # Mid stage 2, SIGTERM (a scheduler's pre-emption): the step ends, a checkpoint is written at
    # step 4 (not a checkpoint_every multiple), and the run stops with the resume hint.
    with pytest.raises(Stopped, match=r"kd stopped by SIGTERM after step 4 of 8.*--resume") as stopped:
        distill(small_options(hybrid_dir, corpus, out, resume=True), on_step=_signal_at("kd", 4))
    assert stopped.value.exit_code == 143
    assert (out.parent / "interrupted.run" / "checkpoints" / "kd-0000004" / "trainable.safetensors").is_file()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back
    report = distill(small_options(hybrid_dir, corpus, out, resume=True))
    want, got = _train_losses(full_run.run_dir), _train_losses(report.run_dir)
    assert [(s, n) for s, n, _ in got] == [(s, n) for s, n, _ in want]  # no step lost or repeated
    assert torch.allclose(torch.tensor([x for *_, x in got]), torch.tensor([x for *_, x in want]), rtol=1e-5, atol=1e-7)
    a, b = report.model.state_dict(), full_run.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in b)


def test_nan_loss_stops_with_the_last_good_checkpoint(hybrid_dir, corpus, tmp_path):
    out = tmp_path / "nan"

    def poison(stage, done):
        if done == 4:
            for _, p in student_parameters_of_run[0]:
                p.data.fill_(float("nan"))

    student_parameters_of_run = []
    import hybridize.distill.trainer as trainer_mod
    original_init = trainer_mod.Trainer.__init__

    def spy(self, model, *a, **k):
        original_init(self, model, *a, **k)
        student_parameters_of_run.append(list(student_parameters(model)))

    trainer_mod.Trainer.__init__ = spy
    try:
        with pytest.raises(DivergedError, match=r"loss became nan at step 5.*attention-0000003.*--resume"):
            distill(small_options(hybrid_dir, corpus, out, stages=["attention"]), on_step=poison)
    finally:
        trainer_mod.Trainer.__init__ = original_init
    assert (out.parent / "nan.run" / "checkpoints" / "attention-0000003" / "trainable.safetensors").is_file()
    assert not out.exists()


def test_merged_lora_equals_unmerged(teacher_dir, hybrid_dir):
    hybrid, _ = api.load(hybrid_dir)
    attach_teacher(hybrid, str(teacher_dir))
    model = prepare_kd(hybrid, KDOptions(train="lora", lora_rank=4))
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(p.requires_grad and p.dtype == torch.float32 for p in lora)
    assert all(p.requires_grad for _, p in student_parameters(model))
    assert not any(".teacher." in n for n, p in model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        for p in lora:
            p.normal_(0, 0.05, generator=torch.Generator().manual_seed(p.numel()))
    ids = torch.randint(2, 98, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        with teacher_mode(model):
            teacher = model(input_ids=ids).logits
        merged_model = finish_model(model, torch.float32)
        merged = merged_model(input_ids=ids).logits
    assert not any("lora" in k for k in merged_model.state_dict())
    assert torch.allclose(merged, unmerged, atol=1e-5)
    original = api.load_teacher(hybrid_dir, teacher=str(teacher_dir))[0]
    with torch.no_grad():
        assert torch.equal(teacher, original(input_ids=ids).logits)  # adapters off in teacher mode


def test_time_cap_shortens_the_stage_and_refits_the_schedule(hybrid_dir, corpus, tmp_path):
    report = distill(small_options(hybrid_dir, corpus, tmp_path / "capped", stages=["attention"],
                                   attention={"max_minutes": 1e-6, "min_lr": 0.1}))
    rows = [json.loads(line) for line in (report.run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, 12))  # 10 timed steps + 1, not the 12 planned
    assert report.stages["attention"].steps == 11
    assert train[-1]["lr"] == pytest.approx(0.1 * 1e-3)  # the re-fitted cosine ends at min_lr


def test_distilling_a_distilled_checkpoint_warns_of_the_adapted_teacher(full_run, hybrid_dir, corpus, tmp_path, capsys):
    """After a stage 2 that trained shared weights (LoRA merged), the teacher view of the checkpoint is
    no longer the original model: the record says so and a further run warns."""
    from hybridize.export import read_record
    assert read_record(full_run.output)["shared_weights_trained"] is True
    capsys.readouterr()
    report = distill(small_options(full_run.output, corpus, tmp_path / "again", stages=["attention"],
                                   attention={"tokens": 2 * 128}))
    assert "teacher here is that adapted model" in " ".join(capsys.readouterr().err.split())  # rich wraps lines
    assert read_record(report.output)["shared_weights_trained"] is True
    # a stage-1-only run from the converted checkpoint leaves the shared weights alone
    fresh = distill(small_options(hybrid_dir, corpus, tmp_path / "s1", stages=["attention"],
                                  attention={"tokens": 2 * 128}))
    assert read_record(fresh.output)["shared_weights_trained"] is False
