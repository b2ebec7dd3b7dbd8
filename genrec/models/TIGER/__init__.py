"""TIGER: the seq2seq backbone on semantic IDs with a collision token (``vq_collision: tiger``)."""

from genrec.errors import ConfigError
from genrec.models.generative import BackboneSettings as Settings
from genrec.models.generative import GenerativeRecommender
from genrec.semantic_ids import semantic_ids


def build(config, interactions, split) -> GenerativeRecommender:
    if config.vq_collision != "tiger":
        raise ConfigError(
            f"TIGER uses vq_collision=tiger, got {config.vq_collision}; for the other IDs use --model=PSID"
        )
    return GenerativeRecommender(config, semantic_ids(config, interactions, split), item_text=interactions.item_text)


__all__ = ["Settings", "build"]
