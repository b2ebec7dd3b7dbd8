"""Making semantic IDs unique.

Items that share a full code tuple form a collision group. Within a group, items are ranked by
their own quantization cost (sum over levels of the squared distance to their chosen codes), ties by
item index; the best keeps its code. Both strategies are deterministic and leave items that do not
collide untouched.

- ``tiger``: append one token, the item's rank within its group (0 for non-colliding items), so IDs
  grow by one level whose size is the largest group (as TIGER).
- ``conflict_free`` (PSID-style): same length, no extra token. Each displaced item takes the nearest
  code tuple that no item uses (ties: the smaller tuple), searching first the last level under its
  own prefix, then the last two levels, and so on. "Nearest" is the summed squared distance of the
  changed levels, measured from the item's own level inputs (exact for product quantizers, a
  first-order approximation for residual ones, where changing a level would change the residuals
  below it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from heapq import heappop, heappush

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


class FreeIDs:
    """The code tuples items use, to hand out the nearest unused one (``conflict_free``): at
    training time to displaced colliding items, later to items added to the catalogue."""

    def __init__(self, used: np.ndarray, codebook_size: int):
        self.codebook_size, self.n_levels = codebook_size, used.shape[1]
        self.used: set[tuple] = set()
        self.prefix_counts: dict[tuple, int] = defaultdict(int)  # used IDs under each prefix, to tell full subtrees
        self.full_children: dict[tuple, set[int]] = defaultdict(
            set
        )  # the codes under each prefix whose subtree is full
        # the same as masks, for the prefixes a search expanded: of their children, and of their grandchildren
        self.full_masks: dict[tuple, np.ndarray] = {}
        self.full_grandchildren: dict[tuple, np.ndarray] = {}
        # the last search (prefix, tail distances, its free IDs still to come), resumed by the next
        # item with the same prefix and distances: a group of identical vectors then costs one search
        self.search: tuple[tuple, np.ndarray, Iterator[tuple]] | None = None
        for code in map(tuple, used.tolist()):
            self.record(code)

    def mark(self, code: tuple) -> None:
        """Take ``code`` (an item placed on it from outside); the IDs a search still holds are then stale."""
        self.search = None
        self.record(code)

    def record(self, code: tuple) -> None:
        if code in self.used:
            return
        self.used.add(code)
        for depth in range(self.n_levels):
            self.prefix_counts[code[:depth]] += 1
        for depth in range(self.n_levels - 1, -1, -1):  # from the leaf up, while the subtrees fill
            if depth + 1 < self.n_levels and not self.is_full(code[: depth + 1]):
                break
            parent, child = code[:depth], code[depth]
            self.full_children[parent].add(child)
            if parent in self.full_masks:
                self.full_masks[parent][child] = True
            if depth and parent[:-1] in self.full_grandchildren:
                self.full_grandchildren[parent[:-1]][parent[-1], child] = True

    def is_full(self, prefix: tuple) -> bool:
        """Whether every ID that starts with ``prefix`` is used."""
        return self.prefix_counts.get(prefix, 0) >= self.codebook_size ** (self.n_levels - len(prefix))

    def nearest(self, code: tuple, distances: np.ndarray) -> tuple:
        """The unused tuple nearest ``code`` (``distances[l, k]``: the item's distance to code ``k`` of
        level ``l``), changing as few trailing levels as possible; marked as used."""
        n_levels = self.n_levels
        for changed in range(1, n_levels + 1):
            prefix = code[: n_levels - changed]
            if not self.is_full(prefix):
                break
        else:
            raise ConfigError(f"all {self.codebook_size**n_levels} semantic IDs are taken: no free one for {code}")
        tail = np.asarray(distances[n_levels - changed :], dtype=np.float64)
        if self.search is None or self.search[0] != prefix or not np.array_equal(self.search[1], tail):
            self.search = (prefix, tail, self.free_in_cost_order(prefix, tail))
        found = next(self.search[2])
        self.record(found)
        return found

    def free_in_cost_order(self, prefix: tuple, tail_distances: np.ndarray) -> Iterator[tuple]:
        """The IDs ``prefix + tail`` unused now, in increasing summed ``tail_distances`` (ties: the
        smaller tuple), by best-first branch and bound over the tail's levels, lazily.

        A node is a prefix that is not full. Its bound is never above the cost of any free ID below
        it, so complete IDs pop in cost order: the cost of its codes, plus the cheapest code of the
        level below whose subtree is not full, plus the cheapest code of each level further down
        (exact for a node just above the last level). Expanding a node bounds all its children that
        are not full at once (full ones are dropped), pushes the one with the smallest bound and
        chains the siblings, one push per pop. So a search looks at the subtrees whose free IDs may
        beat its answer, not at the used IDs, full subtrees or crowded prefixes in between; and
        taking answers one after another (items with identical vectors) continues one search.
        Without these, a group of hundreds of thousands of similar vectors took time quadratic in
        its size (2,140 s at a million items).
        """
        n_tail, start = len(tail_distances), len(prefix)
        cheapest = tail_distances.min(axis=1).tolist()
        orders = np.argsort(tail_distances, axis=1)
        # (bound, node, rank among its free siblings (-1: the root), the siblings, their bounds, the parent's cost)
        heap: list[tuple[float, tuple, int, list[int], list[float], float]] = [(0.0, prefix, -1, [], [], 0.0)]
        while heap:
            _, node, rank, siblings, bounds, base = heappop(heap)
            if rank >= 0 and rank + 1 < len(siblings):
                heappush(heap, (bounds[rank + 1], node[:-1] + (siblings[rank + 1],), rank + 1, siblings, bounds, base))
            depth = len(node) - start
            if depth == n_tail:
                yield node
                continue
            cost = 0.0 if rank < 0 else base + float(tail_distances[depth - 1, node[-1]])
            children, child_bounds = self.bounded_children(
                node, cost, tail_distances[depth:], orders[depth + 1 : depth + 2], cheapest[depth + 2 :]
            )
            heappush(heap, (child_bounds[0], node + (children[0],), 0, children, child_bounds, cost))

    def bounded_children(
        self, node: tuple, cost: float, distances: np.ndarray, order: np.ndarray, cheapest_further: list[float]
    ) -> tuple[list[int], list[float]]:
        """The codes under ``node`` whose subtrees are not full, by increasing lower bound on the
        cost of their cheapest free ID (ties: the smaller code), and those bounds. ``distances``: the
        children's level and those below; ``order``: the grandchildren's level sorted by distance
        (none when the children are the last level); ``cheapest_further``: the cheapest distance of
        each level two or more below the children.

        Bounds add the levels one at a time, in level order, as an ID's cost does: rounding is
        monotone, so a bound never exceeds the cost it bounds, and equals it when exact."""
        codes = np.flatnonzero(~self.masks_below(node, self.full_masks, 1))
        bounds = cost + distances[0, codes]
        if len(order):  # each child's cheapest grandchild that is not full
            full = self.masks_below(node, self.full_grandchildren, 2)
            bounds = bounds + cheapest_not_full(full, codes, distances[1], order[0])
        for level_cheapest in cheapest_further:
            bounds = bounds + level_cheapest
        order = np.argsort(bounds, kind="stable")
        return codes[order].tolist(), bounds[order].tolist()

    def masks_below(self, node: tuple, masks: dict[tuple, np.ndarray], levels: int) -> np.ndarray:
        """Which subtrees ``levels`` (1 or 2) levels below ``node`` are full, as a mask kept up to date
        from now on (built from ``full_children`` the first time it is asked for)."""
        mask = masks.get(node)
        if mask is None:
            mask = masks[node] = np.zeros((self.codebook_size,) * levels, dtype=bool)
            if levels == 1:
                mask[list(self.full_children.get(node, ()))] = True
            else:
                for child in range(self.codebook_size):
                    mask[child, list(self.full_children.get(node + (child,), ()))] = True
        return mask


PEEK = 8  # the cheapest codes a row of the full mask is looked at first: few rows have all of them full


def cheapest_not_full(full: np.ndarray, rows: np.ndarray, distances: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For each of ``rows`` of ``full`` (none all full), the smallest ``distances`` over its codes that
    are not full (``order``: the codes by distance). Most rows have their cheapest code free, so the
    ``PEEK`` cheapest are tried first, and only rows with all of those full are masked whole."""
    head = order[:PEEK]
    free = ~full[np.ix_(rows, head)]
    cheapest = distances[head[free.argmax(axis=1)]]
    crowded = ~free.any(axis=1)
    if crowded.any():
        cheapest[crowded] = np.where(full[rows[crowded]], np.inf, distances[None, :]).min(axis=1)
    return cheapest


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
