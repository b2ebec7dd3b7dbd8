"""Making semantic IDs unique.

Items that share a full code tuple form a collision group. Within a group, items are ranked by
their own quantization cost (sum over levels of the squared distance to their chosen codes), ties by
item index; the best keeps its code. Both strategies are deterministic and leave items that do not
collide untouched.

- ``tiger``: append one token, the item's rank within its group (0 for non-colliding items), so IDs
  grow by one level whose size is the largest group (as TIGER).
- ``conflict_free`` (PSID-style): same length, no extra token. Each displaced item takes the nearest
  code tuple that no item uses, searching first the last level under its own prefix, then the last
  two levels, and so on. "Nearest" is the summed squared distance of the changed levels, measured
  from the item's own level inputs (exact for product quantizers, a first-order approximation for
  residual ones, where changing a level would change the residuals below it).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from genrec.errors import ConfigError


def collision_groups(codes: np.ndarray, distances: np.ndarray) -> list[list[int]]:
    """Groups of >= 2 items with identical codes, each ordered best-first, groups in code order."""
    cost = distances[np.arange(len(codes))[:, None], np.arange(codes.shape[1])[None, :], codes].sum(1)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for item, code in enumerate(map(tuple, codes.tolist())):
        groups[code].append(item)
    return [sorted(members, key=lambda i: (cost[i], i)) for code, members in sorted(groups.items()) if len(members) > 1]


def resolve_tiger(codes: np.ndarray, distances: np.ndarray) -> np.ndarray:
    extra = np.zeros(len(codes), dtype=np.int64)
    for members in collision_groups(codes, distances):
        extra[members] = np.arange(len(members))
    return np.concatenate([codes, extra[:, None]], axis=1)


def cheapest_tuples(level_distances: np.ndarray) -> Iterator[tuple[int, ...]]:
    """Code tuples over the given levels in increasing summed distance (best-first enumeration)."""
    orders = [np.argsort(d, kind="stable") for d in level_distances]
    costs = [d[o] for d, o in zip(level_distances, orders)]
    start = (0,) * len(orders)
    heap = [(float(sum(c[0] for c in costs)), start)]
    seen = {start}
    while heap:
        total, ranks = heapq.heappop(heap)
        yield tuple(int(orders[j][r]) for j, r in enumerate(ranks))
        for j in range(len(ranks)):
            if ranks[j] + 1 < len(orders[j]):
                nxt = ranks[:j] + (ranks[j] + 1,) + ranks[j + 1 :]
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (total - costs[j][ranks[j]] + costs[j][ranks[j] + 1], nxt))


class FreeIDs:
    """The code tuples items use, to hand out the nearest unused one (``conflict_free``): at
    training time to displaced colliding items, later to items added to the catalogue."""

    def __init__(self, used: np.ndarray, codebook_size: int):
        self.codebook_size, self.n_levels = codebook_size, used.shape[1]
        self.used: set[tuple] = set()
        self.prefix_counts: dict[tuple, int] = defaultdict(int)  # used IDs under each prefix, to skip full subtrees
        self.last_search: tuple[tuple, Iterator[tuple[int, ...]]] | None = None
        for code in map(tuple, used.tolist()):
            self.mark(code)

    def mark(self, code: tuple) -> None:
        if code not in self.used:
            self.used.add(code)
            for depth in range(self.n_levels):
                self.prefix_counts[code[:depth]] += 1

    def nearest(self, code: tuple, distances: np.ndarray) -> tuple:
        """The unused tuple nearest ``code`` (``distances[l, k]``: the item's distance to code ``k`` of
        level ``l``), changing as few trailing levels as possible; marked as used.

        The best-first enumeration passes over every used tuple cheaper than the answer. Items with
        the same code and the same distances (a large group of identical vectors, e.g. items with no
        collaborative signal) would each pass over all their predecessors' picks, a cost quadratic in
        the group; so the last search is kept and the next identical item resumes it where it
        stopped. Every tuple it skips is used and tuples never become free, so the answer is the one
        a fresh enumeration would give."""
        n_levels = self.n_levels
        for changed in range(1, n_levels + 1):
            prefix = code[: n_levels - changed]
            if self.prefix_counts[prefix] >= self.codebook_size**changed:
                continue  # every ID under this prefix is taken
            tail_distances = distances[n_levels - changed :]
            key = (prefix, changed, tail_distances.tobytes())
            if self.last_search is not None and self.last_search[0] == key:
                tails = self.last_search[1]
            else:
                tails = cheapest_tuples(tail_distances)
            for tail in tails:
                candidate = prefix + tail
                if candidate not in self.used:
                    break
            self.last_search = (key, tails)
            break
        self.mark(candidate)
        return candidate


def check_capacity(n_items: int, n_levels: int, codebook_size: int) -> None:
    if n_items > codebook_size**n_levels:
        raise ConfigError(
            f"{n_items} items cannot get unique {n_levels}-token IDs from {codebook_size} codes a level "
            f"({codebook_size**n_levels} IDs); raise vq_codebook_size or vq_n_codebooks, or use vq_collision=tiger"
        )


def resolve_conflict_free(codes: np.ndarray, distances: np.ndarray, codebook_size: int) -> np.ndarray:
    check_capacity(*codes.shape, codebook_size)
    resolved = codes.copy()
    free = FreeIDs(codes, codebook_size)
    for members in collision_groups(codes, distances):
        for item in members[1:]:
            resolved[item] = free.nearest(tuple(codes[item].tolist()), distances[item])
    return resolved
