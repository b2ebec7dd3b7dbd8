"""Fine-tuning a finished run after cross-entropy training: GRPO with composable rewards, and DPO /
S-DPO against the model's own or random negatives."""

from genrec.finetune.dpo import DPOSettings, sdpo_loss
from genrec.finetune.grpo import GRPOSettings, group_advantages, grpo_loss, kl_estimate, sample_ids
from genrec.finetune.methods import METHODS, finetune
from genrec.finetune.rewards import REWARDS, Candidates, register_reward, reward

__all__ = [
    "METHODS",
    "REWARDS",
    "Candidates",
    "DPOSettings",
    "GRPOSettings",
    "finetune",
    "group_advantages",
    "grpo_loss",
    "kl_estimate",
    "register_reward",
    "reward",
    "sample_ids",
    "sdpo_loss",
]
