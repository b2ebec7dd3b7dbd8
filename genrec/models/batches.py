"""Training batches built apart from the weights.

Every recommender trains through two steps: :meth:`~BatchTrained.training_batch` turns raw examples
(item-index histories and targets, plus a generator for the model's own random draws) into CPU
tensors, reading nothing that lives on the accelerator, and :meth:`~BatchTrained.batch_loss`
computes the loss from those tensors on the model's device. The split lets the trainer prepare
batches in ``torch.utils.data`` worker processes (``num_workers``) while the main process trains,
and copy them to the GPU from pinned memory.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class BatchTrained(nn.Module):
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def training_batch(
        self, histories: list[np.ndarray], targets: np.ndarray, generator: torch.Generator
    ) -> tuple[torch.Tensor, ...]:
        """CPU tensors of one training batch; random draws (latent tokens, masks, negatives) come from
        ``generator`` only, so a batch is the same whichever process prepares it."""
        raise NotImplementedError

    def batch_loss(self, *batch: torch.Tensor) -> torch.Tensor:
        """The mean training loss of a :meth:`training_batch` whose tensors are on the model's device."""
        raise NotImplementedError

    def on_device(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        device = self.device
        return tuple(t.to(device, non_blocking=True) for t in batch)

    def loss(self, histories: list[np.ndarray], targets: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        """The training loss of raw examples, batched and moved in one call (tests, small scripts)."""
        return self.batch_loss(*self.on_device(self.training_batch(histories, targets, generator)))
