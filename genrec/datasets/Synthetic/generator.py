"""The embedded default dataset: synthetic shoppers with planted structure, generated from a seed.

Why these patterns: the Latte paper argues that a single semantic-ID tree cannot express item
preferences that contradict text similarity. The generator plants exactly that, so a model's gain
on it can be attributed.

- **Items with text.** Every item belongs to a product family (guitar, microscope, ...) and gets a
  title, brand, category path and description from that family's vocabulary, so text embeddings
  cluster by family and semantic IDs share prefixes within a family.
- **Taste groups with learnable order.** Each user belongs to one of ``n_groups`` groups. A group
  likes ``families_per_group`` neighbouring families (together the groups cover all) and walks its items
  along a fixed group-specific *path*:
  the next item is the successor on the path with probability ``follow_prob``, otherwise a random
  item the group likes. Groups share families, so the same item has different successors in
  different groups and the history is needed to tell which.
- **Rank reversals (twin pairs).** Two new items ``a`` / ``a'`` whose texts differ by one word (so
  they share SID prefixes) follow the same anchor item ``x`` in two groups' paths: group ``g1``
  goes ``x -> a``, group ``g2`` goes ``x -> a'``. Given ``x``, one group ranks ``a`` first and the
  other ``a'`` first; neither group ever sees the other's twin.
- **Intransitive similarity (triples).** New items ``A, B, C``: group ``g1`` consumes ``A -> B``,
  group ``g2`` consumes ``B -> C``; no user ever has both ``A`` and ``C``.

The planted structure is returned in ``Interactions.extra`` (``groups``, ``paths``, ``twin_pairs``,
``triples``, raw item ids) for tests and analysis; ``item_groups`` names the twin and triple items,
and ``genrec compare`` reports every model's accuracy on the users whose target is one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field

from genrec.data import Interactions, build_interactions, without_duplicates
from genrec.errors import ConfigError
from genrec.schema import StrictModel


class Settings(StrictModel):
    synthetic_seed: int = Field(description="seed of the generated data")
    synthetic_n_users: int = Field(ge=1, description="users")
    synthetic_n_items: int = Field(ge=10, description="base items (twin and triple items come on top)")
    synthetic_n_groups: int = Field(ge=2, description="taste groups, each walking its items along its own path")
    synthetic_families_per_group: int = Field(ge=1, description="neighbouring item families each group likes")
    synthetic_n_twin_pairs: int = Field(ge=0, description="planted pairs of near-identical items used differently")
    synthetic_n_triples: int = Field(ge=0, description="planted triples of near-identical items")
    synthetic_mean_length: float = Field(ge=5, description="mean sequence length")
    synthetic_follow_prob: float = Field(ge=0, le=1, description="chance that the next item follows the group's path")


@dataclass(frozen=True)
class Family:
    noun: str
    department: str
    adjectives: tuple[str, ...]
    brands: tuple[str, ...]
    uses: tuple[str, ...]


FAMILIES = (
    Family(
        "acoustic guitar",
        "Musical Instruments",
        ("spruce-top", "dreadnought", "parlor", "cutaway"),
        ("Harmonia", "Woodline", "Canyon"),
        ("strumming folk songs", "fingerstyle practice", "campfire sessions"),
    ),
    Family(
        "digital microscope",
        "Industrial & Scientific",
        ("usb", "1000x", "handheld", "stereo"),
        ("Lumiscope", "Optix", "Cellvue"),
        ("inspecting circuit boards", "biology classes", "coin collecting"),
    ),
    Family(
        "espresso machine",
        "Home & Kitchen",
        ("semi-automatic", "15-bar", "compact", "dual-boiler"),
        ("Barista", "Crema", "Roastwell"),
        ("morning lattes", "home cafes", "cappuccino foam"),
    ),
    Family(
        "trail running shoe",
        "Sports & Outdoors",
        ("waterproof", "lightweight", "cushioned", "grippy"),
        ("Stridex", "Peakfoot", "Trailon"),
        ("muddy mountain trails", "ultramarathons", "rocky terrain"),
    ),
    Family(
        "mechanical keyboard",
        "Electronics",
        ("tenkeyless", "rgb", "hot-swap", "wireless"),
        ("Keyforge", "Clackit", "Typhon"),
        ("gaming marathons", "programming", "fast typing"),
    ),
    Family(
        "yoga mat",
        "Sports & Outdoors",
        ("non-slip", "extra-thick", "cork", "travel"),
        ("Zenflow", "Asana", "Lotusa"),
        ("hot yoga", "pilates", "floor stretching"),
    ),
    Family(
        "refracting telescope",
        "Industrial & Scientific",
        ("70mm", "equatorial", "beginner", "apochromatic"),
        ("Stellar", "Orbis", "Nightsky"),
        ("stargazing", "moon photography", "planet viewing"),
    ),
    Family(
        "watercolor paint set",
        "Arts & Crafts",
        ("48-color", "pan", "professional", "metallic"),
        ("Aquarelle", "Brushworks", "Pigmento"),
        ("landscape painting", "botanical illustration", "journaling"),
    ),
    Family(
        "camping tent",
        "Sports & Outdoors",
        ("2-person", "ultralight", "4-season", "pop-up"),
        ("Basecamp", "Ridgeline", "Nomadic"),
        ("backpacking trips", "festival camping", "alpine weather"),
    ),
    Family(
        "strategy board game",
        "Toys & Games",
        ("cooperative", "deck-building", "family", "expansion"),
        ("Meeple", "Tabletop", "Gambit"),
        ("game nights", "two-player duels", "party play"),
    ),
    Family(
        "bluetooth speaker",
        "Electronics",
        ("portable", "waterproof", "bass-boosted", "smart"),
        ("Sonique", "Boomra", "Echowave"),
        ("pool parties", "outdoor music", "podcasts"),
    ),
    Family(
        "chef knife",
        "Home & Kitchen",
        ("8-inch", "damascus", "forged", "santoku"),
        ("Edgecraft", "Kiritsu", "Bladeworks"),
        ("slicing vegetables", "meal prep", "carving roasts"),
    ),
)
COLORS = ("black", "white", "red", "blue", "green", "silver", "orange", "purple")
FEATURES = (
    "rechargeable battery",
    "two-year warranty",
    "recycled packaging",
    "travel case included",
    "premium finish",
    "beginner friendly",
    "professional grade",
    "compact storage",
    "gift ready",
    "ergonomic design",
    "lifetime support",
    "lightweight build",
    "easy cleaning",
    "quiet operation",
    "modular parts",
)


def item_text(family: Family, rng: np.random.Generator, color: str | None = None) -> dict[str, str]:
    brand = family.brands[rng.integers(len(family.brands))]
    adjective = family.adjectives[rng.integers(len(family.adjectives))]
    model = f"{brand[:2].upper()}-{rng.integers(100, 1000)}"
    color = color or COLORS[rng.integers(len(COLORS))]
    use = family.uses[rng.integers(len(family.uses))]
    features = rng.choice(len(FEATURES), size=3, replace=False)
    return {
        "title": f"{brand} {adjective} {family.noun} {model}, {color}",
        "brand": brand,
        "categories": f"{family.department}, {family.noun.title()}s",
        "description": f"A {adjective} {family.noun} by {brand}, made for {use}.",
        "features": ", ".join(FEATURES[i] for i in features),
    }


def twin_text(text: dict[str, str], rng: np.random.Generator) -> dict[str, str]:
    """The same item text with one word changed (its colour)."""
    color = text["title"].rsplit(", ", 1)[1]
    other = COLORS[(COLORS.index(color) + 1 + rng.integers(len(COLORS) - 1)) % len(COLORS)]
    return {**text, "title": text["title"].rsplit(", ", 1)[0] + f", {other}"}


def generate(settings: Settings, duplicates: str = "keep") -> Interactions:
    """The dataset of ``settings``; ``duplicates`` is the policy for an item drawn twice in a row
    (see :func:`genrec.data.without_duplicates`)."""
    rng = np.random.default_rng(settings.synthetic_seed)
    n_groups = settings.synthetic_n_groups
    per_group = settings.synthetic_families_per_group
    if per_group > len(FAMILIES):
        raise ConfigError(f"synthetic_families_per_group must be <= {len(FAMILIES)} (the number of product families)")

    texts: dict[str, dict[str, str]] = {}
    family_items: list[list[str]] = [[] for _ in FAMILIES]

    def new_item(family_index: int, text: dict[str, str] | None = None) -> str:
        item = f"i{len(texts):05d}"
        texts[item] = text or item_text(FAMILIES[family_index], rng)
        return item

    for k in range(settings.synthetic_n_items):
        family = k % len(FAMILIES)
        family_items[family].append(new_item(family))

    # group g likes a window of consecutive families starting at g * F / n_groups (in a seeded family
    # order): every family is liked by someone and neighbouring groups share some families
    order = rng.permutation(len(FAMILIES))
    liked = [
        sorted(int(order[(g * len(FAMILIES) // n_groups + j) % len(FAMILIES)]) for j in range(per_group))
        for g in range(n_groups)
    ]
    paths = [[item for f in liked[g] for item in family_items[f]] for g in range(n_groups)]
    paths = [[path[i] for i in rng.permutation(len(path))] for path in paths]

    triples = []
    for _ in range(settings.synthetic_n_triples):
        g1, g2 = rng.choice(n_groups, size=2, replace=False).tolist()
        a, b, c = (new_item(int(rng.integers(len(FAMILIES)))) for _ in range(3))
        at = int(rng.integers(len(paths[g1]) + 1))
        paths[g1][at:at] = [a, b]
        at = int(rng.integers(len(paths[g2]) + 1))
        paths[g2][at:at] = [b, c]
        triples.append({"items": [a, b, c], "groups": [int(g1), int(g2)]})

    pairs = [
        (g1, g2) for g1 in range(n_groups) for g2 in range(n_groups) if g1 != g2 and set(liked[g1]) & set(liked[g2])
    ]
    if settings.synthetic_n_twin_pairs and not pairs:
        raise ConfigError("no two synthetic groups share a family; raise synthetic_families_per_group")
    twin_pairs = []  # planted last, so nothing lands between an anchor and its twin
    used_anchors: set[str] = set()
    base_items = {item for items in family_items for item in items}
    for _ in range(settings.synthetic_n_twin_pairs):
        g1, g2 = pairs[rng.integers(len(pairs))]
        shared = sorted((set(paths[g1]) & set(paths[g2]) & base_items) - used_anchors)
        if not shared:
            raise ConfigError("too many synthetic twin pairs for the shared items; lower synthetic_n_twin_pairs")
        anchor = shared[rng.integers(len(shared))]
        used_anchors.add(anchor)
        family = int(anchor[1:]) % len(FAMILIES)
        a = new_item(family)
        b = new_item(family, twin_text(texts[a], rng))
        paths[g1].insert(paths[g1].index(anchor) + 1, a)
        paths[g2].insert(paths[g2].index(anchor) + 1, b)
        twin_pairs.append({"anchor": anchor, "items": [a, b], "groups": [int(g1), int(g2)]})

    sequences, groups, n_duplicates = [], [], 0
    for user in range(settings.synthetic_n_users):
        group = user % n_groups
        path = paths[group]
        length = max(5, int(rng.poisson(settings.synthetic_mean_length)))
        position = int(rng.integers(len(path)))
        seq = [path[position]]
        while len(seq) < length:
            if rng.random() < settings.synthetic_follow_prob:
                position = (position + 1) % len(path)
            else:
                position = int(rng.integers(len(path)))
            seq.append(path[position])
        seq, dropped = without_duplicates(f"u{user:05d}", seq, duplicates)
        n_duplicates += dropped
        sequences.append((f"u{user:05d}", seq))
        groups.append(group)

    item_groups = {
        "twin items": [i for pair in twin_pairs for i in pair["items"]],
        "triple items": [i for triple in triples for i in triple["items"]],
    }
    extra = {"groups": groups, "paths": paths, "twin_pairs": twin_pairs, "triples": triples, "item_groups": item_groups}
    return build_interactions("Synthetic", sequences, texts, {"duplicate_interactions": n_duplicates}, extra=extra)


def load(config) -> Interactions:
    return generate(config, config.duplicates)
