"""Collision handling: uniqueness, untouched non-colliding items, and the nearest-free-code rule
against a brute-force search."""

import itertools

import numpy as np
import pytest

from genrec.errors import ConfigError
from genrec.semantic_ids.collisions import cheapest_tuples, collision_groups, resolve_conflict_free, resolve_tiger


def random_case(seed, n=150, levels=3, k=6):
    rng = np.random.default_rng(seed)
    distances = rng.random((n, levels, k)).astype(np.float32)
    codes = rng.integers(0, 3, size=(n, levels))  # few codes in use: many collisions
    for item in range(n):  # make the chosen code the nearest one, as a quantizer would
        distances[item, np.arange(levels), codes[item]] = 0.0
    return codes, distances


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conflict_free_is_unique_same_length_and_keeps_non_colliding(seed):
    codes, distances = random_case(seed)
    resolved = resolve_conflict_free(codes, distances, codebook_size=6)
    assert resolved.shape == codes.shape
    assert len({tuple(r) for r in resolved.tolist()}) == len(codes)
    counts = {}
    for code in map(tuple, codes.tolist()):
        counts[code] = counts.get(code, 0) + 1
    alone = np.array([counts[tuple(c)] == 1 for c in codes.tolist()])
    assert np.array_equal(resolved[alone], codes[alone])
    for members in collision_groups(codes, distances):  # the best of each group keeps its code
        assert np.array_equal(resolved[members[0]], codes[members[0]])
    assert np.array_equal(resolved, resolve_conflict_free(codes, distances, codebook_size=6))


def test_conflict_free_takes_nearest_unused_code_by_brute_force():
    codes, distances = random_case(5, n=22, levels=2, k=5)
    resolved = resolve_conflict_free(codes, distances, codebook_size=5)
    used = {tuple(c) for c in codes.tolist()}
    branches = {"same prefix": 0, "escalated": 0}
    for members in collision_groups(codes, distances):
        for item in members[1:]:
            prefix = tuple(codes[item, :1].tolist())
            free_last = [(distances[item, 1, c], c) for c in range(5) if prefix + (c,) not in used]
            branches["same prefix" if free_last else "escalated"] += 1
            if free_last:  # a free code under the same prefix: the nearest one by last-level distance
                assert tuple(resolved[item].tolist()) == prefix + (min(free_last)[1],)
            else:  # the whole subtree is taken: nearest free pair by summed distance
                free = [
                    (distances[item, 0, a] + distances[item, 1, b], (a, b))
                    for a in range(5)
                    for b in range(5)
                    if (a, b) not in used
                ]
                best = min(cost for cost, _ in free)
                assert distances[item, 0, resolved[item, 0]] + distances[item, 1, resolved[item, 1]] == pytest.approx(
                    best
                )
            used.add(tuple(resolved[item].tolist()))
    assert branches["same prefix"] > 0 and branches["escalated"] > 0  # the case exercises both rules


def test_conflict_free_escalates_when_the_last_level_is_full():
    codes = np.array(
        [[0, 0]] * 3 + [[0, 1]]
    )  # prefix 0 has codes 0 and 1 only (codebook size 2) and 3 items want (0, 0)
    distances = np.zeros((4, 2, 2), np.float32)
    distances[:, :, 1] = 1.0
    distances[3, 1] = [1.0, 0.0]
    resolved = resolve_conflict_free(codes, distances, codebook_size=2)
    assert len({tuple(r) for r in resolved.tolist()}) == 4
    assert sorted(tuple(r) for r in resolved.tolist()) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_conflict_free_code_space_too_small():
    with pytest.raises(ConfigError, match="cannot get unique 2-token IDs from 3 codes"):
        resolve_conflict_free(np.zeros((10, 2), int), np.zeros((10, 2, 3), np.float32), codebook_size=3)


def test_tiger_appends_rank_within_group():
    codes, distances = random_case(3)
    resolved = resolve_tiger(codes, distances)
    assert resolved.shape == (len(codes), codes.shape[1] + 1)
    assert np.array_equal(resolved[:, :-1], codes)
    assert len({tuple(r) for r in resolved.tolist()}) == len(codes)
    for members in collision_groups(codes, distances):
        assert resolved[members, -1].tolist() == list(range(len(members)))
    singles = [i for i in range(len(codes)) if (codes == codes[i]).all(1).sum() == 1]
    assert (resolved[singles, -1] == 0).all()


def test_cheapest_tuples_enumerates_in_cost_order():
    rng = np.random.default_rng(0)
    d = rng.random((3, 4))
    order = list(cheapest_tuples(d))
    assert sorted(order) == sorted(itertools.product(range(4), repeat=3))
    costs = [sum(d[j, c] for j, c in enumerate(t)) for t in order]
    assert costs == sorted(costs)


def fresh_search_resolution(codes, distances, codebook_size):
    """The rule without the kept search: every displaced item enumerates from scratch."""
    from genrec.semantic_ids.collisions import FreeIDs

    resolved, free = codes.copy(), FreeIDs(codes, codebook_size)
    for members in collision_groups(codes, distances):
        for item in members[1:]:
            free.last_search = None
            resolved[item] = free.nearest(tuple(codes[item].tolist()), distances[item])
    return resolved


def test_a_large_group_of_identical_items_resolves_as_fresh_searches_do_in_linear_work(monkeypatch):
    from genrec.semantic_ids import collisions

    rng = np.random.default_rng(3)
    n, levels, k = 3000, 3, 16
    distances = rng.random((n, levels, k)).astype(np.float32)
    distances[:2000] = distances[0]  # 2,000 identical vectors (items without signal): one code
    codes = distances.argmin(axis=2)
    codes[2000:2100] = codes[0]  # and some different items wanting that code too
    enumerated = [0]
    real = collisions.cheapest_tuples

    def counted(level_distances):
        for tail in real(level_distances):
            enumerated[0] += 1
            yield tail

    monkeypatch.setattr(collisions, "cheapest_tuples", counted)
    resolved = resolve_conflict_free(codes, distances, codebook_size=k)
    kept, enumerated[0] = enumerated[0], 0
    assert np.array_equal(resolved, fresh_search_resolution(codes, distances, k))
    assert len({tuple(r) for r in resolved.tolist()}) == n
    assert kept < 3 * n < enumerated[0] / 50  # tuples looked at: about the group's size, not its square
