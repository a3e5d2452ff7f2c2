"""The teacher switch: one model copy that runs exactly the original model or exactly the hybrid."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from hybridize import api
from hybridize.distill.teacher import (AttentionSwitch, TeacherError, attach_teacher, detach_teacher, switches,
                                       teacher_mode)

from .distill_helpers import convert_to


def _inputs(seed: int = 0, batch: int = 2, length: int = 40):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 98, (batch, length), generator=gen)
    packed = torch.cat([torch.arange(15), torch.arange(length - 15)])[None].expand(batch, -1)
    return ids, packed


@pytest.fixture(scope="module")
def mixed_dir(teacher_dir, tmp_path_factory):
    """Every kind of layer: GDN, sliding window (8 tokens, shorter than the inputs), KDA, full."""
    return convert_to(teacher_dir, tmp_path_factory.mktemp("mixed") / "h", ["gdn", "swa", "kda", "full"], window=8)


@pytest.mark.parametrize("packed", [False, True])
def test_teacher_mode_is_the_original_model_exactly(teacher_dir, mixed_dir, packed):
    original = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()
    hybrid, _ = api.load(mixed_dir)
    attach_teacher(hybrid, str(teacher_dir))
    ids, pos = _inputs()
    kwargs = {"position_ids": pos} if packed else {}
    with torch.no_grad():
        want = original(ids, use_cache=False, **kwargs).logits
        with teacher_mode(hybrid):
            got = hybrid(ids, use_cache=False, **kwargs).logits
        student = hybrid(ids, use_cache=False, **kwargs).logits
    assert torch.equal(got, want)
    assert not torch.allclose(student, want, atol=1e-3)  # the switch really switches


def test_student_mode_and_detach_give_back_the_plain_hybrid(teacher_dir, mixed_dir):
    plain, _ = api.load(mixed_dir)
    hybrid, _ = api.load(mixed_dir)
    keys = set(hybrid.state_dict())
    attach_teacher(hybrid, str(teacher_dir))
    assert [s.layer_idx for s in switches(hybrid)] == [0, 2]
    assert all(not p.requires_grad for s in switches(hybrid) for p in s.teacher.parameters())
    ids, pos = _inputs(1)
    with torch.no_grad():
        want = plain(ids, use_cache=False, position_ids=pos).logits
        got = hybrid(ids, use_cache=False, position_ids=pos).logits
    assert torch.equal(got, want)
    detach_teacher(hybrid)
    assert not any(isinstance(m, AttentionSwitch) for m in hybrid.modules())
    assert set(hybrid.state_dict()) == keys


def test_teacher_weights_are_the_originals_read_from_safetensors(teacher_dir, hybrid_dir):
    original = AutoModelForCausalLM.from_pretrained(teacher_dir)
    hybrid, _ = api.load(hybrid_dir)
    attach_teacher(hybrid, str(teacher_dir))
    for s in switches(hybrid):
        ref = original.model.layers[s.layer_idx].self_attn.state_dict()
        got = s.teacher.state_dict()
        assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) for k in ref)


def test_attach_without_teacher_or_converted_layers_is_a_user_error(teacher_dir, hybrid_dir, tmp_path):
    hybrid, _ = api.load(hybrid_dir)
    with pytest.raises(TeacherError, match="--teacher"):
        attach_teacher(hybrid, None)
    full = convert_to(teacher_dir, tmp_path / "full", ["swa", "full", "full", "full"], window=8)
    model, _ = api.load(full)
    with pytest.raises(TeacherError, match="nothing to distil"):
        attach_teacher(model, str(teacher_dir))
