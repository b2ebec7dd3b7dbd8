"""SimGR (Simply Generative Recommendation): no token generation. A transformer reads the
history as semantic-ID tokens and its last hidden state is the user vector h(C); an item's vector
A(E_i) aggregates the item's SID-token embeddings taken from the *same* table; p(i | C) is the
softmax over all items of <h(C), A(E_i)> / temperature, trained with full-catalogue cross-entropy
and ranked exhaustively at inference (nothing pruned, no independence assumption).

``backbone=scratch`` (the offline default) is a small causal transformer with its own token table;
a path to a local Hugging Face model uses that model instead (its vocabulary extended with the SID
tokens, its own sizes; an ``instruction`` text is then tokenized with its tokenizer and prefixed),
fine-tuned whole or, with ``lora_rank > 0``, through ``peft`` LoRA adapters plus the SID-token rows.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from genrec.errors import ConfigError
from genrec.models.full_ranking import FullRankingRecommender, PositionalEncoder, TransformerSettings
from genrec.models.sampled_softmax import SampledSoftmaxSettings
from genrec.models.sid_tokens import SIDTokenTable
from genrec.models.SimGR.aggregators import AGGREGATORS, ItemAggregator
from genrec.schema import setting
from genrec.semantic_ids import SemanticIDs, semantic_ids, with_new_items


class Settings(TransformerSettings, SampledSoftmaxSettings):
    backbone: str = Field(description="scratch (a small causal transformer) or a local Hugging Face model folder")
    item_aggregator: Literal[AGGREGATORS] = Field(  # type: ignore[valid-type]
        description="how an item's vector is made from its SID-token embeddings"
    )
    temperature: float = Field(gt=0, description="softmax temperature of the user-item scores")
    instruction: str = Field(description="text before the history (pretrained backbones only)")
    lora_rank: int = setting(
        since=0, ge=0, description="pretrained backbones: 0 fine-tunes all, r > 0 trains rank-r LoRA adapters"
    )
    lora_alpha: float = setting(since=16.0, gt=0, description="LoRA scaling (alpha / rank)")


class ScratchBackbone(nn.Module):
    def __init__(self, sids: SemanticIDs, max_tokens: int, settings: Settings):
        super().__init__()
        self.table = SIDTokenTable(sids, settings.hidden_size)
        self.trunk = PositionalEncoder(max_tokens, settings, causal=True)
        self.embedding, self.pad_id, self.dim = self.table.embedding, 0, settings.hidden_size
        self.offsets = self.table.offsets  # token id of each level's code 0
        self.register_buffer("item_token_ids", self.table.item_tokens.clone(), persistent=False)
        self.register_buffer("prefix_ids", torch.zeros(0, dtype=torch.long), persistent=False)

    def last_hidden(self, ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.embedding(ids), real)[:, -1]


class PretrainedBackbone(nn.Module):
    """A local Hugging Face model (no download): its token embeddings extended with one row per
    SID token; left padding with explicit positions, so the last position is the latest token.

    With ``lora_rank > 0`` only LoRA adapters on its linear layers and the new SID-token rows train
    (peft's ``trainable_token_indices``): the item side reads the same adapted rows as the history."""

    def __init__(self, path: Path, sids: SemanticIDs, instruction: str, lora_rank: int, lora_alpha: float):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.model = AutoModel.from_pretrained(path)
        base = self.model.get_input_embeddings().num_embeddings
        self.model.resize_token_embeddings(base + sum(sids.level_sizes))
        self.dim = self.model.get_input_embeddings().embedding_dim
        if self.dim != self.model.config.hidden_size:
            raise ConfigError(
                f"backbone {path}: hidden size {self.model.config.hidden_size} differs from its embedding size"
            )
        if lora_rank:
            self.model = with_lora(self.model, lora_rank, lora_alpha, range(base, base + sum(sids.level_sizes)))
        self.embedding = self.model.get_input_embeddings()
        self.offsets = [base + sum(sids.level_sizes[:level]) for level in range(len(sids.level_sizes))]
        self.register_buffer(
            "item_token_ids",
            torch.as_tensor(np.asarray(sids.codes) + np.array(self.offsets), dtype=torch.long),
            persistent=False,
        )
        prefix: list[int] = []
        self.pad_id = 0
        if instruction:
            try:
                tokenizer = AutoTokenizer.from_pretrained(path)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"instruction needs the backbone's tokenizer, which {path} lacks: {exc}") from None
            prefix = tokenizer(instruction, add_special_tokens=False)["input_ids"]
            self.pad_id = tokenizer.pad_token_id or 0
        self.register_buffer("prefix_ids", torch.tensor(prefix, dtype=torch.long), persistent=False)

    def last_hidden(self, ids: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        positions = (real.long().cumsum(dim=1) - 1).clamp_min(0)
        return self.model(input_ids=ids, attention_mask=real.long(), position_ids=positions).last_hidden_state[:, -1]


def with_lora(model: nn.Module, rank: int, alpha: float, sid_rows: range) -> nn.Module:
    """``model`` frozen but for rank-``rank`` LoRA adapters on every linear layer and its SID-token
    embedding rows (which no pretrained weight knows, so they must learn in full)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ConfigError("lora_rank > 0 needs peft: pip install 'genrec[lora]'") from None
    return get_peft_model(
        model, LoraConfig(r=rank, lora_alpha=alpha, target_modules="all-linear", trainable_token_indices=list(sid_rows))
    )


@dataclass
class HistoryTokens:
    """Histories as the backbone reads them, built on the CPU (training batches are prepared apart
    from the weights: :mod:`genrec.models.base`): ``[B, T]`` right-aligned token ids (instruction,
    then each item's SID tokens, the latest ``max_len`` items) and the mask of real positions."""

    item_token_ids: torch.Tensor  # [n_items, levels]
    prefix: torch.Tensor  # the instruction's token ids
    pad_id: int
    max_len: int

    def __call__(self, histories: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [
            torch.cat(
                [self.prefix, self.item_token_ids[torch.as_tensor(h[-self.max_len :], dtype=torch.long)].flatten()]
            )
            for h in histories
        ]
        length = max(len(r) for r in rows)
        tokens = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        real = torch.zeros(len(rows), length, dtype=torch.bool)
        for row, values in enumerate(rows):
            tokens[row, length - len(values) :] = values
            real[row, length - len(values) :] = True
        return tokens, real


class SimGR(FullRankingRecommender):
    adds_items = True

    def __init__(self, sids: SemanticIDs, max_len: int, settings: Settings):
        super().__init__()
        self.n_items, self.max_len, self.temperature = len(sids.codes), max_len, settings.temperature
        self.semantic_ids = sids  # what its checkpoints record (genrec.checkpoint)
        if settings.backbone == "scratch":
            if settings.instruction:
                raise ConfigError(
                    "instruction needs a pretrained backbone with a tokenizer (backbone=scratch has no words)"
                )
            if settings.lora_rank:
                raise ConfigError("lora_rank needs a pretrained backbone (backbone=scratch trains in full)")
            self.backbone = ScratchBackbone(sids, max_len * len(sids.level_sizes), settings)
        else:
            path = Path(settings.backbone)
            if not path.is_dir():
                raise ConfigError(f"backbone {settings.backbone!r} is neither 'scratch' nor a local model folder")
            self.backbone = PretrainedBackbone(
                path, sids, settings.instruction, settings.lora_rank, settings.lora_alpha
            )
        self.aggregate = ItemAggregator(settings.item_aggregator, self.backbone.dim, len(sids.level_sizes))
        self.history_tokens = HistoryTokens(
            self.backbone.item_token_ids.clone(), self.backbone.prefix_ids.clone(), self.backbone.pad_id, max_len
        )

    def add_items(self, codes: np.ndarray, texts: list[dict[str, str]]) -> None:
        """Score new items (cold start): an item's vector aggregates its SID tokens' rows, which the
        model already learned, so its semantic ID ``codes`` is all it needs."""
        self.semantic_ids = with_new_items(self.semantic_ids, codes)
        ids = self.backbone.item_token_ids
        new = torch.as_tensor(np.asarray(codes) + np.array(self.backbone.offsets), dtype=torch.long, device=ids.device)
        self.backbone.item_token_ids = torch.cat([ids, new])
        self.history_tokens.item_token_ids = self.backbone.item_token_ids.cpu()
        self.n_items = len(self.semantic_ids.codes)

    def history_batch(self, histories: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.history_tokens(histories)

    def item_vectors(self) -> torch.Tensor:
        """``[n_items, d]``: A(E_i) from the rows of the embedding table the history also reads."""
        return self.aggregate(self.backbone.embedding(self.backbone.item_token_ids))

    def scores_of(self, tokens: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return self.backbone.last_hidden(tokens, real) @ self.item_vectors().T / self.temperature

    def candidate_scores(self, tokens: torch.Tensor, real: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        vectors = self.aggregate(self.backbone.embedding(self.backbone.item_token_ids[items]))
        return self.backbone.last_hidden(tokens, real) @ vectors.T / self.temperature


def build(config, interactions, split) -> SimGR:
    if config.vq_collision != "conflict_free":
        raise ConfigError("SimGR builds item vectors from their codes and uses vq_collision=conflict_free")
    model = SimGR(semantic_ids(config, interactions, split), config.max_item_seq_len, config)
    model.use_sampled_softmax(config, split.train.targets)
    return model


__all__ = ["AGGREGATORS", "Settings", "SimGR", "build"]
