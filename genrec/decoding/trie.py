"""The set of valid semantic IDs as per-level transition tables.

``tables[l].children(nodes)[..., token]`` is the node reached from ``node`` (a prefix of length
``l``) by emitting local code ``token`` at level ``l``, or ``-1`` when no item has that prefix; at the
last level the value is the item index. A level is a dense ``[nodes, level size]`` table, so that
masking a batch of beams is one gather per step, unless that table would be large and mostly
empty: deep levels of a big catalogue (4-level IDs of a million items: one row per 3-token prefix,
about a million rows of 256, 1 GB) are kept as sparse rows instead (each node's valid tokens and
their targets, as STATIC does), and a step expands only its beams' rows. A *free* leading
level (Latte's latent token) allows every token and leads back to the root of the ID trie. Rows may
also spell one item several ways (``leaf_items``: the item each row ends in), as Latte's latent tokens
bound to permutations of the ID levels do.

A request may be restricted to some items (:meth:`SIDTrie.reachable`): every transition is then
masked unless an allowed item lies below it, so the beam never spends a slot on a prefix that leads
only to excluded items, and a restricted search ranks the allowed items as exhaustive scoring would.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# A level's dense table larger than this and at most this full is kept as sparse rows. Expanding a
# step's beams costs more from sparse rows (about 10x for rows with ~200 children), so only tables
# that would not fit comfortably are.
SPARSE_ABOVE_BYTES = 256 * 2**20
SPARSE_FILL = 0.25


class DenseLevel:
    """``table[node, token]``: the next node (``-1``: no such prefix)."""

    def __init__(self, table: torch.Tensor):
        self.table = table
        self.size = table.shape[1]

    @property
    def nbytes(self) -> int:
        return self.table.numel() * self.table.element_size()

    def to(self, device: torch.device | str) -> DenseLevel:
        return DenseLevel(self.table.to(device))

    def children(self, nodes: torch.Tensor) -> torch.Tensor:
        return self.table[nodes].long()


class SparseLevel:
    """Node ``n``'s valid tokens are ``tokens[offsets[n]:offsets[n + 1]]`` (ascending), leading to
    ``targets`` at the same positions: memory in the number of transitions, not nodes x tokens."""

    def __init__(self, offsets: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor, size: int):
        self.offsets, self.tokens, self.targets, self.size = offsets, tokens, targets, size

    @classmethod
    def from_transitions(cls, nodes: np.ndarray, tokens: np.ndarray, targets: np.ndarray, n_nodes: int, size: int):
        order = np.lexsort((tokens, nodes))  # by node, then token
        offsets = np.zeros(n_nodes + 1, dtype=np.int64)
        np.cumsum(np.bincount(nodes, minlength=n_nodes), out=offsets[1:])
        as_tensor = torch.as_tensor
        return cls(as_tensor(offsets), as_tensor(tokens[order]), as_tensor(targets[order].astype(np.int32)), size)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.offsets, self.tokens, self.targets))

    def to(self, device: torch.device | str) -> SparseLevel:
        return SparseLevel(self.offsets.to(device), self.tokens.to(device), self.targets.to(device), self.size)

    def children(self, nodes: torch.Tensor) -> torch.Tensor:
        flat = nodes.reshape(-1)
        starts = self.offsets[flat]
        counts = self.offsets[flat + 1] - starts
        rows = torch.repeat_interleave(torch.arange(len(flat), device=flat.device), counts)
        first = torch.cumsum(counts, 0) - counts  # each node's first place in the expanded list
        positions = torch.arange(len(rows), device=flat.device) + torch.repeat_interleave(starts - first, counts)
        out = torch.full((len(flat) * self.size,), -1, dtype=torch.long, device=flat.device)
        out.scatter_(0, rows * self.size + self.tokens[positions], self.targets[positions].long())
        return out.reshape(*nodes.shape, self.size)


def level_table(nodes: np.ndarray, tokens: np.ndarray, targets: np.ndarray, size: int) -> DenseLevel | SparseLevel:
    """The transitions ``nodes --tokens--> targets`` (each once) as a dense table, or as sparse rows
    when the table would be large and mostly ``-1``."""
    n_nodes = int(nodes.max()) + 1
    if 4 * n_nodes * size > SPARSE_ABOVE_BYTES and len(nodes) <= SPARSE_FILL * n_nodes * size:
        return SparseLevel.from_transitions(nodes, tokens, targets, n_nodes, size)
    table = torch.full((n_nodes, size), -1, dtype=torch.int32)
    table[torch.as_tensor(nodes), torch.as_tensor(tokens)] = torch.as_tensor(targets, dtype=torch.int32)
    return DenseLevel(table)


def prefix_index(codes: np.ndarray, level_sizes: list[int], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's prefix of ``length`` codes, numbered in lexicographic order, and the first row of
    each prefix. Prefixes become one integer each when their count fits (a 1-D sort, several times
    faster than sorting rows)."""
    if math.prod(level_sizes[:length]) < 2**63:
        key = np.zeros(len(codes), dtype=np.int64)
        for level in range(length):
            key = key * level_sizes[level] + codes[:, level]
    else:
        key = codes[:, :length]
    _, first, index = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return index.ravel(), first


class SIDTrie:
    def __init__(
        self, codes: np.ndarray, level_sizes: list[int], free_prefix_size: int = 0, leaf_items: np.ndarray | None = None
    ):
        codes = np.asarray(codes, dtype=np.int64)
        n_rows, n_levels = codes.shape
        leaves = np.arange(n_rows) if leaf_items is None else np.asarray(leaf_items, dtype=np.int64)
        if len(level_sizes) != n_levels:
            raise ValueError(f"{n_levels} code levels but {len(level_sizes)} level sizes")
        if ((codes < 0) | (codes >= np.asarray(level_sizes))).any():
            raise ValueError(f"codes outside the level sizes {level_sizes}")
        if len(prefix_index(codes, level_sizes, n_levels)[1]) != n_rows:
            raise ValueError("semantic IDs must be unique to build a trie")
        tables = []
        prefixes = []  # valid token sequences of each length: how wide a beam can usefully be
        reached = []  # per level: the node (or, at the last level, the item) each row reaches
        if free_prefix_size:
            tables.append(DenseLevel(torch.zeros(1, free_prefix_size, dtype=torch.int32)))
            prefixes.append(free_prefix_size)
            reached.append(np.zeros(n_rows, dtype=np.int64))
        node = np.zeros(n_rows, dtype=np.int64)  # each row's node at the current depth
        for level in range(n_levels):
            if level + 1 < n_levels:
                child, first = prefix_index(codes, level_sizes, level + 1)  # first: one row per transition
                distinct = len(first)
            else:
                child, first, distinct = leaves, np.arange(n_rows), n_rows
            tables.append(level_table(node[first], codes[first, level], child[first], level_sizes[level]))
            prefixes.append(max(free_prefix_size, 1) * distinct)
            reached.append(child)
            node = child
        self.tables = tables
        self.level_sizes = [t.size for t in tables]
        self.n_prefixes = prefixes
        self.reached = [torch.as_tensor(r) for r in reached]
        self.n_items = int(leaves.max()) + 1

    @property
    def depth(self) -> int:
        return len(self.tables)

    @property
    def nbytes(self) -> int:
        """Memory of the transition tables."""
        return sum(t.nbytes for t in self.tables)

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
        return self.tables[level].children(nodes)
