"""Fine-tuning a finished run after cross-entropy training: GRPO with composable rewards."""

from genrec.finetune.grpo import GRPOSettings, finetune, group_advantages, grpo_loss, kl_estimate, sample_ids
from genrec.finetune.rewards import REWARDS, Candidates, register_reward, reward

__all__ = [
    "REWARDS",
    "Candidates",
    "GRPOSettings",
    "finetune",
    "group_advantages",
    "grpo_loss",
    "kl_estimate",
    "register_reward",
    "reward",
    "sample_ids",
]
