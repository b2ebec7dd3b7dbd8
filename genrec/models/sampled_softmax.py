"""Sampled softmax with logQ correction: training a full-ranking model without scoring the catalogue.

Full-catalogue cross-entropy scores every item for every training target: at a million items a
batch of 256 is a 256 x 1,000,000 score matrix (and its gradient) per step. Instead, each target
competes with the batch's other targets (in-batch negatives) and ``negatives`` items drawn once
per batch (uniformly, or by how often each item is a training target). Popular items are drawn
more often than they would be ranked, so every candidate's score is lowered by the log of its
expected count among the candidates, ``log(B * p(item) + S * q(item))`` (the logQ correction of
Yi et al., RecSys 2019), which makes the sampled loss a consistent estimate of the full one.
A candidate that is the target's own item elsewhere in the batch (an accidental hit) is masked.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from genrec.schema import StrictModel, setting


class SampledSoftmaxSettings(StrictModel):
    """The loss keys of the full-ranking models that score items by a user-item product."""

    sampled_softmax: int = setting(
        since=0,
        ge=0,
        description="0: cross-entropy over the whole catalogue; > 0: each target against the batch's other "
        "targets and this many sampled items, logQ-corrected (for catalogues of 100k items and more)",
    )
    negative_sampler: Literal["uniform", "popularity"] = setting(
        since="popularity",
        description="sampled_softmax: draw the extra negatives uniformly or by how often items are training targets",
    )


class SampledSoftmax:
    """Draws a batch's shared negatives and computes the corrected loss over its candidates."""

    def __init__(self, train_targets: np.ndarray, n_items: int, negatives: int, sampler: str):
        counts = np.bincount(np.asarray(train_targets, dtype=np.int64), minlength=n_items).astype(np.float64)
        if counts.sum() == 0:
            raise ValueError("sampled softmax needs training targets")
        self.negatives = negatives
        self.target_share = torch.as_tensor(counts / counts.sum(), dtype=torch.float64)
        self.proposal = (
            self.target_share if sampler == "popularity" else torch.full((n_items,), 1.0 / n_items, dtype=torch.float64)
        )

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """``[negatives]`` item indices, with replacement, from the proposal."""
        return torch.multinomial(self.proposal, self.negatives, replacement=True, generator=generator)

    def candidates(self, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """The items every target is scored against: the batch's targets, then the drawn negatives."""
        return torch.cat([targets, negatives])

    def loss(self, scores: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Mean corrected cross-entropy; ``scores[b, c]`` is user ``b``'s score of candidate ``c`` of
        :meth:`candidates`, whose column ``b`` is user ``b``'s target."""
        candidates = self.candidates(targets, negatives)
        on = candidates.device
        expected = (
            len(targets) * self.target_share.to(on)[candidates] + len(negatives) * self.proposal.to(on)[candidates]
        )
        logits = scores.float() - torch.log(expected).float()
        rows = torch.arange(len(targets), device=on)
        hits = candidates[None, :] == targets[:, None]
        hits[rows, rows] = False
        return F.cross_entropy(logits.masked_fill(hits, float("-inf")), rows)
