"""DPO (Rafailov et al., 2023) and S-DPO (softmax DPO with several negatives; Chen et al., 2024) for
the generative recommenders.

Per training history the held-out next item is the chosen ID and ``negatives`` other items are
rejected: the model's own best items from a constrained beam search (``negative_source=beam``:
hard negatives, refreshed every step from the model being trained) or items drawn uniformly from
the catalogue (``random``: easy negatives). With ``r(y) = log p(y) - log p_ref(y)``, the ID's
log-probability under the model being trained minus that under the frozen starting model, the loss
is S-DPO's

    -log sigmoid(-log sum_j exp(beta * (r(y_j) - r(y_chosen))))

which for one negative is DPO's ``-log sigmoid(beta * (r(y_chosen) - r(y_rejected)))``. At the start
the two models agree, every ``r`` is 0 and the loss is ``log(1 + negatives)``.

An ID's log-probability is that of its tokens. Latte generates a latent token first: a beam's
negatives keep the latent token they were found under, and the chosen and the random IDs get one
drawn uniformly, as Latte's training draws it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from genrec.errors import ConfigError
from genrec.finetune.loop import Finetuner, FinetuneSettings


def sdpo_loss(log_ratios: torch.Tensor, beta: float) -> torch.Tensor:
    """``log_ratios`` ``[B, 1 + K]``: ``log p - log p_ref`` of the chosen ID (column 0) and of its K
    rejected IDs. S-DPO's loss, averaged over the rows (DPO's when K is 1)."""
    margins = beta * (log_ratios[:, 1:] - log_ratios[:, :1])
    return -F.logsigmoid(-torch.logsumexp(margins, dim=1)).mean()


class DPOSettings(FinetuneSettings):
    """``genrec finetune --method=dpo`` settings (see the module docstring)."""

    beta: float = Field(1.0, gt=0)
    negatives: int = Field(3, ge=1)
    negative_source: Literal["beam", "random"] = "beam"


class DPOTrainer(Finetuner):
    """DPO / S-DPO on a finished generative run (see the module docstring)."""

    name, headline = "DPO", "accuracy"

    def __init__(self, run, settings: DPOSettings, directory: Path):
        super().__init__(run, settings, directory)
        if settings.negatives >= run.interactions.n_items:
            raise ConfigError(
                f"--negatives={settings.negatives}: the catalogue has {run.interactions.n_items} items, so at most "
                f"{run.interactions.n_items - 1} can be rejected beside the chosen one"
            )

    def rejected(self, ids: torch.Tensor, mask: torch.Tensor, targets: np.ndarray, generator: torch.Generator):
        """``[B, K, T]`` vocabulary tokens of each history's rejected IDs."""
        s, model = self.settings, self.model
        if s.negative_source == "random":
            draws = torch.rand(len(targets), model.n_items, generator=generator)
            draws[torch.arange(len(targets)), torch.as_tensor(targets)] = 2.0  # never the chosen item
            items = draws.topk(s.negatives, dim=1, largest=False).indices
            return self.id_tokens(items, generator)
        # Hard: the model's own best items. A beam this wide holds at least K + 1 distinct items (an
        # item has at most one path per latent token), so K besides the chosen one.
        width = (s.negatives + 1) * max(1, model.vocab.n_latent)
        model.trie.to(self.device)
        items, _, tokens = model.model.generate(ids, mask, model.trie, width, True)
        tokens, items = self.sequence_tokens(tokens).cpu(), items.cpu()
        rows = []
        for row, target in enumerate(targets):
            kept, taken = [], {int(target)}
            for beam, item in enumerate(items[row].tolist()):
                if item >= 0 and item not in taken:
                    taken.add(item)
                    kept.append(beam)
                    if len(kept) == s.negatives:
                        break
            rows.append(tokens[row, kept])
        return torch.stack(rows).to(self.device)

    def id_tokens(self, items: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``[..., T]`` vocabulary tokens of these items' IDs (Latte: after a latent token drawn uniformly)."""
        vocab, tokens = self.model.vocab, self.model.item_tokens[items]
        if vocab.n_latent:
            latents = torch.randint(vocab.n_latent, items.shape, generator=generator)
            flat = vocab.latent_targets(tokens.reshape(-1, tokens.shape[-1]), latents.reshape(-1))
            tokens = flat.view(*items.shape, -1)
        return tokens.to(self.device)

    def step(
        self, histories: list[np.ndarray], targets: np.ndarray, seen: list[np.ndarray], generator: torch.Generator
    ) -> dict:
        s, model = self.settings, self.model
        ids, mask = model.inputs(histories)
        model.eval()  # no dropout: the model being trained starts exactly at the reference
        with torch.no_grad():
            chosen = self.id_tokens(torch.as_tensor(targets).unsqueeze(1), generator)
            sequences = torch.cat([chosen, self.rejected(ids, mask, targets, generator)], dim=1)  # [B, 1 + K, T]
            per_history = sequences.shape[1]
            flat = sequences.view(-1, sequences.shape[-1])
            repeated_ids, repeated_mask = ids.repeat_interleave(per_history, 0), mask.repeat_interleave(per_history, 0)
            reference = self.reference.model.token_log_probs(repeated_ids, repeated_mask, flat).sum(1)
        log_probs = model.model.token_log_probs(repeated_ids, repeated_mask, flat).sum(1)
        log_ratios = (log_probs - reference).view(len(targets), per_history)
        loss = sdpo_loss(log_ratios, s.beta)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        margins = (log_ratios[:, :1] - log_ratios[:, 1:]).detach()
        return {
            "loss": loss.item(),
            "accuracy": float((margins > 0).all(1).float().mean()),  # chosen gained more than every rejected
            "margin": float(margins.mean()),
            "chosen_log_prob": float(log_probs.detach().view(len(targets), per_history)[:, 0].mean()),
        }
