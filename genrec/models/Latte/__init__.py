"""Latte: PSID plus a latent token sampled per training example and aggregated at inference."""

from typing import Literal

from pydantic import Field, field_validator

from genrec.models.generative import BackboneSettings, GenerativeRecommender
from genrec.semantic_ids import semantic_ids


class Settings(BackboneSettings):
    n_latent_tokens: int = Field(ge=0)
    aggregation_method: Literal["agg_sum", "agg_max"]

    @field_validator("n_latent_tokens")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value == 0:
            raise ValueError("Latte needs at least 1 latent token; for none, use --model=PSID")
        return value


def build(config, interactions, split) -> GenerativeRecommender:
    return GenerativeRecommender(config, semantic_ids(config, interactions, split), n_latent=config.n_latent_tokens, aggregation=config.aggregation_method)


__all__ = ["Settings", "build"]
