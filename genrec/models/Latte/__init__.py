"""Latte: PSID plus a latent token sampled per training example and aggregated at inference.

With ``latent_mode: permutation`` (the paper's §6) latent token ``k`` is bound to the ``k``-th order of
the ID levels (``itertools.permutations`` order; 3 levels give 6): training generates the target's
levels in the order of its sampled token, and each latent token decodes under the trie of its order.
"""

import itertools
import math
from typing import Literal

from pydantic import Field, field_validator

from genrec.errors import ConfigError
from genrec.models.generative import BackboneSettings, GenerativeRecommender
from genrec.schema import setting
from genrec.semantic_ids import semantic_ids


class Settings(BackboneSettings):
    n_latent_tokens: int = Field(
        ge=0, description="latent tokens; one is drawn per training target and prepended to its ID"
    )
    aggregation_method: Literal["agg_sum", "agg_max"] = setting(
        roles=("evaluation",),
        description="an item's score from its beams over latent tokens: log-sum-exp (agg_sum) or the best (agg_max)",
    )
    latent_mode: Literal["shared", "permutation"] = setting(
        since="shared",
        description="shared: every latent token leads to the same ID tree; permutation: token k orders the ID's levels "
        "by the k-th permutation",
    )

    @field_validator("n_latent_tokens")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value == 0:
            raise ValueError("Latte needs at least 1 latent token; for none, use --model=PSID")
        return value


def build(config, interactions, split) -> GenerativeRecommender:
    sids = semantic_ids(config, interactions, split)
    orders = ()
    if config.latent_mode == "permutation":
        if config.n_latent_tokens > math.factorial(sids.n_levels):
            raise ConfigError(
                f"n_latent_tokens={config.n_latent_tokens} with latent_mode=permutation: the {sids.n_levels} ID "
                f"levels have only {math.factorial(sids.n_levels)} orders"
            )
        orders = tuple(itertools.islice(itertools.permutations(range(sids.n_levels)), config.n_latent_tokens))
    return GenerativeRecommender(
        config,
        sids,
        n_latent=config.n_latent_tokens,
        aggregation=config.aggregation_method,
        permutations=orders,
        item_text=interactions.item_text,
    )


__all__ = ["Settings", "build"]
