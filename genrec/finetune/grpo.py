"""GRPO (group relative policy optimization; Shao et al., 2024) for the generative recommenders.

Per training history the current model generates a group of ``group`` candidate IDs (sampled with
``temperature`` through the ID tree, the latent token too for Latte; or the top of a beam search),
each is scored by the rewards (:mod:`genrec.finetune.rewards`), and a candidate's advantage is its
reward normalised within its group, ``(r - mean) / (std + eps)``. The model then follows the clipped
policy-ratio objective over the candidates' token log-probabilities, ``min(rho A, clip(rho, 1 - e,
1 + e) A)`` with ``rho = p_new / p_old`` per token, minus ``kl`` times the per-token KL estimate
``exp(q - p) - (q - p) - 1`` to the frozen starting model ``q`` (zero when they agree, never
negative), in small steps that stay close to where training left the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from genrec.decoding import INVALID, SIDTrie
from genrec.finetune.loop import Finetuner, FinetuneSettings
from genrec.finetune.rewards import REWARDS, Candidates, reward


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """``[B, G]`` rewards normalised within each group (population std); a group whose candidates
    all earn the same gets zero advantages."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, unbiased=False, keepdim=True)
    return (rewards - mean) / (std + eps)


def kl_estimate(log_probs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-token ``exp(q - p) - (q - p) - 1`` (the unbiased, non-negative estimator of KL(p || q) GRPO uses)."""
    difference = reference - log_probs
    return torch.exp(difference) - difference - 1


def grpo_loss(
    log_probs: torch.Tensor,
    old: torch.Tensor,
    reference: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    kl: float,
) -> torch.Tensor:
    """``log_probs`` / ``old`` / ``reference``: ``[N, T]`` token log-probabilities of the N candidates
    under the model being trained, the model that generated them and the frozen start;
    ``advantages`` ``[N]``. The negated clipped objective plus the KL penalty, averaged over tokens."""
    ratio = torch.exp(log_probs - old)
    advantage = advantages.unsqueeze(1)
    objective = torch.minimum(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage)
    return (-objective + kl * kl_estimate(log_probs, reference)).mean()


@torch.no_grad()
def sample_ids(
    step,
    trie: SIDTrie,
    batch_size: int,
    group: int,
    temperature: float,
    constrained: bool,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``group`` IDs per history drawn token by token from the model's distribution at
    ``temperature`` (restricted to the trie when ``constrained``): ``(items [B, G], tokens [B, G,
    depth])``, ``INVALID`` for an ID that is no item. ``step`` is a backbone's beam step."""
    nodes = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
    tokens = torch.zeros(batch_size, 1, 0, dtype=torch.long, device=device)
    parents = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
    for level in range(trie.depth):
        log_probs = step(level, tokens, parents).float()  # [B, W, V]
        children = trie.children(level, nodes.clamp_min(0)).masked_fill(nodes.unsqueeze(-1) < 0, -1)
        logits = log_probs / temperature
        if constrained:
            logits = logits.masked_fill(children < 0, float("-inf"))
        if level == 0:  # one empty beam: draw the group's first tokens from it
            logits, children = logits.expand(-1, group, -1), children.expand(-1, group, -1)
        probs = torch.softmax(logits, dim=-1).reshape(-1, logits.shape[-1])
        token = torch.multinomial(probs.cpu(), 1, generator=generator).view(batch_size, group).to(device)
        nodes = children.gather(2, token.unsqueeze(-1)).squeeze(-1)
        parents = torch.zeros_like(token) if level == 0 else torch.arange(group, device=device).expand(batch_size, -1)
        tokens = torch.cat([tokens.expand(-1, group, -1) if level == 0 else tokens, token.unsqueeze(-1)], dim=-1)
    return torch.where(nodes >= 0, nodes, torch.full_like(nodes, INVALID)), tokens


class GRPOSettings(FinetuneSettings):
    """``genrec finetune --method=grpo`` settings (see the module docstring)."""

    reward: dict[str, float] = Field(default_factory=lambda: {"relevance": 1.0})
    partial_credit: float = Field(0.5, ge=0, le=1)
    group: int = Field(8, ge=2)
    candidates: Literal["sample", "beam"] = "sample"
    temperature: float = Field(1.0, gt=0)
    constrained: bool = True  # false: candidates may leave the trie (what a validity reward trains against)
    clip: float = Field(0.2, gt=0, lt=1)
    kl: float = Field(0.04, ge=0)
    updates: int = Field(1, ge=1)  # optimizer steps per generated group (1: the ratio starts at 1 each step)

    @field_validator("reward", mode="before")
    @classmethod
    def _parse(cls, value):
        """``relevance:1,validity:0.5`` on the command line, or a mapping."""
        if isinstance(value, str):
            pairs = [part.split(":") for part in value.split(",") if part.strip()]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("expected name:weight[,name:weight...]")
            value = {name.strip(): float(weight) for name, weight in pairs}
        unknown = sorted(set(value) - set(REWARDS))
        if unknown:
            raise ValueError(f"unknown reward(s) {unknown}; choose from {list(REWARDS)}")
        if isinstance(value, dict) and value and not any(weight for weight in value.values()):
            raise ValueError(
                "every reward weight is 0: every candidate would get the same reward and nothing would be "
                "learned; give at least one reward a weight (e.g. relevance:1)"
            )
        return value


class GRPOTrainer(Finetuner):
    """GRPO on a finished generative run (see the module docstring)."""

    name, headline = "GRPO", "reward"

    def __init__(self, run, settings: GRPOSettings, directory: Path):
        super().__init__(run, settings, directory)
        counts = np.bincount(np.concatenate(run.split.train_sequences), minlength=run.interactions.n_items)
        self.popularity = torch.as_tensor(counts)
        self.codes = torch.as_tensor(self.model.semantic_ids.codes)

    def candidates(
        self, ids: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(items [B, G], tokens [B, G, depth])`` generated by the current model."""
        s, model = self.settings, self.model
        model.trie.to(self.device)
        if s.candidates == "beam":
            items, _, tokens = model.model.generate(ids, mask, model.trie, s.group, s.constrained)
            return items, tokens
        step = model.model.beam_step(ids, mask)
        return sample_ids(step, model.trie, len(ids), s.group, s.temperature, s.constrained, generator, self.device)

    def generated_codes(self, tokens: torch.Tensor) -> torch.Tensor:
        """The semantic-ID part of generated tokens, in the IDs' level order (latent token dropped)."""
        vocab = self.model.vocab
        codes = tokens[..., 1:] if vocab.n_latent else tokens
        if vocab.permutations:  # each latent token generates the levels in its own order, in one shared range
            orders = torch.as_tensor(vocab.permutations, device=tokens.device)[tokens[..., 0]]  # [B, G, L]
            offsets = torch.tensor(vocab.level_offsets, device=tokens.device) - vocab.level_offsets[0]
            codes = torch.empty_like(codes).scatter_(-1, orders, codes) - offsets
        return codes

    def step(
        self, histories: list[np.ndarray], targets: np.ndarray, seen: list[np.ndarray], generator: torch.Generator
    ) -> dict:
        s, model = self.settings, self.model
        ids, mask = model.inputs(histories)
        model.eval()
        with torch.no_grad():
            items, tokens = self.candidates(ids, mask, generator)
            group = items.shape[1]
            flat = self.sequence_tokens(tokens).view(-1, tokens.shape[-1])
            repeated_ids, repeated_mask = ids.repeat_interleave(group, 0), mask.repeat_interleave(group, 0)
            old = model.model.token_log_probs(repeated_ids, repeated_mask, flat)
            reference = self.reference.model.token_log_probs(repeated_ids, repeated_mask, flat)
            targets_t = torch.as_tensor(targets)
            rewards = reward(
                s.reward,
                Candidates(
                    items.cpu(),
                    self.generated_codes(tokens).cpu(),
                    old.sum(1).view(items.shape).cpu(),
                    targets_t,
                    self.codes[targets_t],
                    seen,
                    self.popularity,
                    s.partial_credit,
                ),
            )
            advantages = group_advantages(rewards).to(self.device).view(-1)
        for _ in range(s.updates):  # dropout stays off, so the first update's ratio is exactly 1
            log_probs = model.model.token_log_probs(repeated_ids, repeated_mask, flat)
            loss = grpo_loss(log_probs, old, reference, advantages, s.clip, s.kl)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return {
            "loss": loss.item(),
            "reward": float(rewards.mean()),
            "hit": float((items.cpu() == targets_t[:, None]).any(1).float().mean()),
            "valid_share": float((items >= 0).float().mean()),
        }
