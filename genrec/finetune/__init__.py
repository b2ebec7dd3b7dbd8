"""Fine-tuning a finished run after cross-entropy training: GRPO with composable rewards."""

from genrec.finetune.grpo import GRPOSettings, finetune, group_advantages, grpo_loss, kl_estimate, sample_ids
from genrec.finetune.rewards import REWARDS, reward

__all__ = [
    "GRPOSettings",
    "REWARDS",
    "finetune",
    "group_advantages",
    "grpo_loss",
    "kl_estimate",
    "reward",
    "sample_ids",
]
