"""PSID: the seq2seq backbone on conflict-free semantic IDs (``vq_collision: conflict_free``)."""

from genrec.errors import ConfigError
from genrec.models.generative import BackboneSettings as Settings
from genrec.models.generative import GenerativeRecommender
from genrec.semantic_ids import semantic_ids


def build(config, interactions, split) -> GenerativeRecommender:
    if config.vq_collision != "conflict_free":
        raise ConfigError(
            f"PSID uses vq_collision=conflict_free, got {config.vq_collision}; for the other IDs use --model=TIGER"
        )
    return GenerativeRecommender(config, semantic_ids(config, interactions, split), item_text=interactions.item_text)


__all__ = ["Settings", "build"]
