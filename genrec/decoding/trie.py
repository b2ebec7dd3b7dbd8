"""The set of valid semantic IDs as dense per-level transition tables.

``tables[l][node, token]`` is the node reached from ``node`` (a prefix of length ``l``) by emitting
local code ``token`` at level ``l``, or ``-1`` when no item has that prefix; at the last level the
value is the item index. Masking a batch of beams is then one gather per step. A *free* leading
level (Latte's latent token) allows every token and leads back to the root of the ID trie. Rows may
also spell one item several ways (``leaf_items``: the item each row ends in), as Latte's latent tokens
bound to permutations of the ID levels do.

A request may be restricted to some items (:meth:`SIDTrie.reachable`): every transition is then
masked unless an allowed item lies below it, so the beam never spends a slot on a prefix that leads
only to excluded items, and a restricted search ranks the allowed items as exhaustive scoring would.
"""

from __future__ import annotations

import numpy as np
import torch


class SIDTrie:
    def __init__(
        self, codes: np.ndarray, level_sizes: list[int], free_prefix_size: int = 0, leaf_items: np.ndarray | None = None
    ):
        codes = np.asarray(codes, dtype=np.int64)
        n_rows, n_levels = codes.shape
        leaves = np.arange(n_rows) if leaf_items is None else np.asarray(leaf_items, dtype=np.int64)
        if len(level_sizes) != n_levels:
            raise ValueError(f"{n_levels} code levels but {len(level_sizes)} level sizes")
        if len({tuple(c) for c in codes.tolist()}) != n_rows:
            raise ValueError("semantic IDs must be unique to build a trie")
        tables = []
        prefixes = []  # valid token sequences of each length: how wide a beam can usefully be
        reached = []  # per level: the node (or, at the last level, the item) each row reaches
        if free_prefix_size:
            tables.append(torch.zeros(1, free_prefix_size, dtype=torch.int32))
            prefixes.append(free_prefix_size)
            reached.append(np.zeros(n_rows, dtype=np.int64))
        node = np.zeros(n_rows, dtype=np.int64)  # each row's node at the current depth
        for level in range(n_levels):
            if level + 1 < n_levels:
                _, child = np.unique(codes[:, : level + 1], axis=0, return_inverse=True)
                child = child.ravel()
                distinct = int(child.max()) + 1
            else:
                child, distinct = leaves, n_rows
            table = torch.full((int(node.max()) + 1, level_sizes[level]), -1, dtype=torch.int32)
            table[torch.as_tensor(node), torch.as_tensor(codes[:, level])] = torch.as_tensor(child, dtype=torch.int32)
            tables.append(table)
            prefixes.append(max(free_prefix_size, 1) * distinct)
            reached.append(child)
            node = child
        self.tables = tables
        self.level_sizes = [t.shape[1] for t in tables]
        self.n_prefixes = prefixes
        self.reached = [torch.as_tensor(r) for r in reached]
        self.n_items = int(leaves.max()) + 1

    @property
    def depth(self) -> int:
        return len(self.tables)

    def to(self, device: torch.device | str) -> SIDTrie:
        self.tables = [t.to(device) for t in self.tables]
        self.reached = [r.to(device) for r in self.reached]
        return self

    def reachable(self, allowed: torch.Tensor) -> list[torch.Tensor]:
        """Per level, ``[B, targets]`` booleans: which nodes the level's transitions lead to (items at
        the last level) have an allowed item below them, for ``allowed`` ``[B, n_items]``."""
        rows = allowed[:, self.reached[-1]].to(torch.uint8)  # [B, rows]: each row's item allowed?
        masks = []
        for reached in self.reached[:-1]:
            targets = int(reached.max()) + 1
            index = reached.unsqueeze(0).expand(len(allowed), -1)
            masks.append(
                torch.zeros(len(allowed), targets, dtype=torch.uint8, device=allowed.device)
                .scatter_reduce(1, index, rows, reduce="amax")
                .bool()
            )
        return masks + [allowed]

    def children(self, level: int, nodes: torch.Tensor) -> torch.Tensor:
        """``[..., level_size]`` next node per token for the given nodes (``-1``: invalid)."""
        return self.tables[level][nodes].long()
