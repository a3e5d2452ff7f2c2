"""Stage 1 loss: each converted layer reproduces the teacher attention's output on the same input.

The loss is normalised MSE, ||student - teacher||^2 / ||teacher||^2 per layer, so layers whose
attention output is large do not dominate and the figure reads the same at any model size: 1.0 is
"no better than outputting zeros", 0.0 is exact.
"""
from __future__ import annotations

import torch


def normalised_mse(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    s, t = student.float(), teacher.float()
    return (s - t).pow(2).sum() / (t.pow(2).sum() + eps)


class LayerLosses:
    """Collects the per-layer losses of one teacher forward (AttentionSwitch.on_transfer) and
    back-propagates each at once, so only one layer's activations are alive at a time. Values stay on
    the device (no sync per layer); a non-finite loss is caught by the trainer before the optimizer
    step, so its poisoned gradients are never applied."""

    def __init__(self, scale: float = 1.0, backward: bool = True):
        self.scale, self.backward = scale, backward
        self.values: dict[int, torch.Tensor] = {}

    def __call__(self, layer_idx: int, student: torch.Tensor, teacher: torch.Tensor) -> None:
        loss = normalised_mse(student, teacher)
        self.values[layer_idx] = loss.detach()
        if self.backward:
            (loss * self.scale).backward()

    def total(self) -> torch.Tensor:
        """Mean over layers (a device scalar)."""
        return torch.stack(list(self.values.values())).mean()
