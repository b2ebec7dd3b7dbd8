"""The contract every registered model keeps, written down.

A model package's ``build(config, interactions, split)`` returns a :class:`Recommender`. The
trainer, the evaluator, runs, serving, the analyses and fine-tuning use a model only through what
this class declares, never by probing for methods:

- **training**, in two steps so that batches are built apart from the weights:
  :meth:`~Recommender.training_batch` turns raw examples (item-index histories and targets, plus a
  generator for the model's own random draws) into CPU tensors, reading nothing that lives on the
  accelerator, and :meth:`~Recommender.batch_loss` computes the loss from those tensors on the
  model's device. The trainer can then prepare batches in ``torch.utils.data`` worker processes
  (``num_workers``) while the main process trains, and copy them to the GPU from pinned memory;
- **recommending**: :meth:`~Recommender.recommend_scored` (and :meth:`~Recommender.recommend`, its
  items alone): ``[B, k]`` item indices, best first, never an excluded item, ``EMPTY`` in slots the
  model cannot fill;
- **capabilities**, class attributes that say what else a model does:

  ``returns_beams``
      ``recommend(k=num_beams)`` returns the whole final beam of a beam search (the generative
      models); the model then also has ``max_beams`` (the widest useful beam) and
      ``beams_per_item`` (the most final beams one item can fill), which the evaluator's width rule
      reads (:func:`genrec.ranking.search_width`). Otherwise it ranks every item.
  ``learns_windows``
      it trains on whole sequence windows (every next item of a window in one pass) rather than on
      (history, target) pairs (:func:`genrec.trainer.training_data`).
  ``adds_items``
      :meth:`~Recommender.add_items` gives it new items (their semantic IDs) without training: cold
      start (:meth:`genrec.Run.add_items`).
  ``semantic_ids``
      the semantic IDs it decodes or scores through (its checkpoints record their fingerprint);
      ``None`` for an item-ID model.
  ``latent_tokens``
      how many latent tokens lead its IDs (Latte; 0 otherwise).

``tests/test_model_contract.py`` checks every registered model against this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from genrec.semantic_ids import SemanticIDs


class Recommender(nn.Module):
    returns_beams: bool = False
    learns_windows: bool = False
    adds_items: bool = False
    semantic_ids: SemanticIDs | None = None
    latent_tokens: int = 0
    n_items: int

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

    def recommend_scored(
        self,
        histories: list[np.ndarray],
        k: int,
        num_beams: int,
        exclude: list[np.ndarray] | None = None,
        allowed: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, k] item indices, [B, k] scores)`` for the histories, best first: never an item of
        ``exclude[b]`` for user ``b`` nor one outside ``allowed[b]`` (``[B, n_items]`` booleans);
        ``EMPTY`` (score ``-inf``) where no item is left to list. ``num_beams``: the beam of a
        ``returns_beams`` model (unused by a full ranking)."""
        raise NotImplementedError

    def recommend(
        self, histories: list[np.ndarray], k: int, num_beams: int, exclude: list[np.ndarray] | None = None
    ) -> torch.Tensor:
        """``[B, k]`` item indices of :meth:`recommend_scored`."""
        return self.recommend_scored(histories, k, num_beams, exclude)[0]

    def add_items(self, codes: np.ndarray, texts: list[dict[str, str]]) -> None:
        """Make new items recommendable at once from their semantic IDs ``codes`` (``[n, levels]``,
        unique against the catalogue's) and their ``texts`` (text field: value; for the models that
        read text): item ``n_items + j`` is ``codes[j]``. Only for ``adds_items``."""
        raise NotImplementedError(f"{type(self).__name__} cannot add items (adds_items is False)")
