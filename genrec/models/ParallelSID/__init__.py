"""ParallelSID: the parallel-generation paradigm that SimGR criticises (RPG-like, without RPG's
graph decoding). One forward pass predicts an independent distribution per semantic-ID position;
an item's score is the sum of its tokens' log-marginals, computed for every item (no search, no
pruning), so only the independence assumption separates it from the true item distribution.

The history is read item by item (an item's input vector is the mean of its SID-token embeddings)
by a causal transformer; the last position, projected once per level, is scored against that
level's token embeddings (the same table). Training: the sum over positions of each position's
cross-entropy for the target's code.
"""

import numpy as np
import torch
from torch import nn

from genrec.errors import ConfigError
from genrec.models.full_ranking import FullRankingRecommender, PositionalEncoder, TransformerSettings, right_aligned
from genrec.models.sid_tokens import SIDTokenTable
from genrec.semantic_ids import SemanticIDs, semantic_ids, with_new_items

Settings = TransformerSettings


class ParallelSID(FullRankingRecommender):
    adds_items = True

    def __init__(self, sids: SemanticIDs, max_len: int, settings: Settings):
        super().__init__()
        d = settings.hidden_size
        self.n_items, self.max_len = len(sids.codes), max_len
        self.semantic_ids = sids  # what its checkpoints record (genrec.checkpoint)
        self.tokens = SIDTokenTable(sids, d)
        self.trunk = PositionalEncoder(max_len, settings, causal=True)
        self.heads = nn.ModuleList(nn.Linear(d, d) for _ in sids.level_sizes)

    def add_items(self, codes: np.ndarray, texts: list[dict[str, str]]) -> None:
        """Score new items (cold start) by their semantic IDs ``codes``: an item's score is the sum of
        its codes' log-marginals, which the model already predicts."""
        self.semantic_ids = with_new_items(self.semantic_ids, codes)
        self.tokens.add_items(codes)
        self.n_items = len(self.semantic_ids.codes)

    def history_batch(self, histories: list[np.ndarray]) -> tuple[torch.Tensor]:
        return (right_aligned(histories, self.max_len),)

    def level_log_probs(self, histories: list[np.ndarray]) -> list[torch.Tensor]:
        """Per level, ``[B, level_size]`` log-marginals of the next item's code."""
        return self.marginals(*self.on_device(self.history_batch(histories)))

    def marginals(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        """:meth:`level_log_probs` of right-aligned item ``tokens``."""
        items = tokens - 1  # -1: padding
        hidden = self.trunk(self.tokens.item_token_embeddings(items).mean(dim=2), items >= 0)[:, -1]
        return [
            torch.log_softmax((head(hidden) @ self.tokens.level_rows(level).T).float(), dim=-1)
            for level, head in enumerate(self.heads)
        ]

    def scores_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, n_items]``: the sum over levels of the log-marginal of each item's code."""
        return sum(log_probs[:, self.tokens.codes[:, level]] for level, log_probs in enumerate(self.marginals(tokens)))

    def batch_loss(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The sum over levels of the cross-entropy of the target's code."""
        codes = self.tokens.codes[targets]
        per_level = [
            log_probs.gather(1, codes[:, level : level + 1]) for level, log_probs in enumerate(self.marginals(tokens))
        ]
        return -torch.cat(per_level, dim=1).sum(dim=1).mean()


def build(config, interactions, split) -> ParallelSID:
    if config.vq_collision != "conflict_free":
        raise ConfigError("ParallelSID scores items by their codes and uses vq_collision=conflict_free")
    return ParallelSID(semantic_ids(config, interactions, split), config.max_item_seq_len, config)


__all__ = ["ParallelSID", "Settings", "build"]
