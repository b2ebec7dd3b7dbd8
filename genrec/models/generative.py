"""TIGER, PSID and Latte as recommenders: a backbone over semantic-ID tokens plus training targets
and decoding.

They differ only in their semantic IDs (``tiger``: one extra token; ``conflict_free``: same length)
and in Latte's latent token: in training one of ``n_latent_tokens`` is drawn uniformly for every
target each time it is drawn and prepended to its ID; at inference one beam search generates
latent token then ID, and an item's beams are aggregated over latent tokens.

The backbone is the papers' T5 encoder-decoder (``architecture: t5``, trained on every history prefix),
a causal decoder (``architecture: decoder``, :mod:`genrec.models.sid_decoder`, trained on windows of
each sequence in one pass: several times fewer tokens per epoch) or any Hugging Face causal LM on
the same windows (``architecture: hf_causal_lm``, :mod:`genrec.models.sid_causal_lm`).
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from genrec.decoding import aggregate_beams
from genrec.errors import GenrecError
from genrec.models.base import Recommender
from genrec.models.sid_causal_lm import build_causal_lm
from genrec.models.sid_decoder import SIDDecoder
from genrec.models.sid_seq2seq import SIDSeq2Seq, SIDVocabulary
from genrec.ranking import drop_excluded, exclusion_mask, list_length, pad_ranked, search_width
from genrec.runtime import available_memory
from genrec.schema import TEXT_FIELDS, StrictModel, comma_separated, setting
from genrec.semantic_ids import SemanticIDs, with_new_items

log = logging.getLogger(__name__)


class BackboneSettings(StrictModel):
    """Backbone and size (paper: a T5 of 4 + 4 blocks, d_model 128, d_ff 1024, 6 heads, d_kv 64).
    The decoder backbone has ``num_layers + num_decoder_layers`` blocks of the same width."""

    architecture: Literal["t5", "decoder", "hf_causal_lm"] = setting(
        since="t5",
        description="t5: the papers' encoder-decoder on history prefixes; decoder: a causal decoder on whole windows; "
        "hf_causal_lm: a Hugging Face causal LM (backbone, backbone_path) on the same windows",
    )
    backbone: str = setting(
        since="llama",
        description="hf_causal_lm: the Hugging Face model type (llama, qwen2, mistral, gpt2, ...) of a "
        "random-initialised backbone sized by d_model, d_ff, num_layers + num_decoder_layers, num_heads and d_kv",
    )
    backbone_path: str | None = setting(
        since=None,
        description="hf_causal_lm: a local Hugging Face model folder (config.json, and weights to start from them); "
        "its own sizes replace the size settings; null: the backbone setting",
    )
    position_encoding: Literal["relative_bias", "rotary"] = setting(
        since="relative_bias",
        description="decoder: T5's learned relative position bias, or rotary positions (as Llama, Qwen and Phi)",
    )
    history_text: list[Literal[TEXT_FIELDS]] = setting(  # type: ignore[valid-type]
        since=[],
        description="hf_causal_lm: item text fields written after each item's semantic ID in the sequences the LM "
        "reads (MiniOneRec-style prompts); empty: semantic IDs only",
    )
    history_text_tokens: int = setting(
        since=16, ge=1, description="history_text: the first this many text tokens of each item"
    )
    d_model: int = Field(ge=1, description="hidden size")
    d_ff: int = Field(ge=1, description="feed-forward size")
    num_layers: int = Field(ge=1, description="encoder blocks (decoder architecture: blocks, with num_decoder_layers)")
    num_decoder_layers: int = Field(ge=1, description="decoder blocks")
    num_heads: int = Field(ge=1, description="attention heads per block")
    d_kv: int = Field(ge=1, description="size of one head's keys and values")
    dropout_rate: float = Field(ge=0, lt=1, description="dropout probability")
    constrained_decoding: bool = setting(
        roles=("evaluation",),
        description="beam search within the trie of real items; false: an ablation counting invented IDs (invalid@10)",
    )

    split_history_text = field_validator("history_text", mode="before")(comma_separated)

    @model_validator(mode="after")
    def _architecture_settings_need_their_architecture(self):
        if self.history_text and self.architecture != "hf_causal_lm":
            raise ValueError(
                f"history_text={self.history_text} writes text into a language model's sequences: use it with "
                f"architecture=hf_causal_lm (architecture is {self.architecture})"
            )
        if self.position_encoding != "relative_bias" and self.architecture != "decoder":
            raise ValueError(
                f"position_encoding={self.position_encoding} is genrec's decoder's: use it with architecture=decoder "
                f"(architecture is {self.architecture}; a Hugging Face backbone has its class's own positions)"
            )
        return self


class GenerativeRecommender(Recommender):
    returns_beams = True  # recommend(k=num_beams) returns the whole final beam (see evaluate)
    adds_items = True

    def __init__(
        self,
        config,
        sids: SemanticIDs,
        n_latent: int = 0,
        aggregation: str = "agg_sum",
        permutations: tuple[tuple[int, ...], ...] = (),
        item_text: list[dict[str, str]] | None = None,
    ):
        super().__init__()
        self.vocab = SIDVocabulary(tuple(sids.level_sizes), n_latent, permutations)
        self.latent_tokens = n_latent
        self.learns_windows = config.architecture != "t5"  # the trainer feeds it genrec.data.Windows
        if config.architecture == "t5":
            self.model = SIDSeq2Seq(
                self.vocab,
                config.d_model,
                config.d_ff,
                config.num_layers,
                config.num_decoder_layers,
                config.num_heads,
                config.d_kv,
                config.dropout_rate,
            )
            cache_bytes = (
                2 * 2 * 4 * config.num_decoder_layers * config.num_heads * config.d_kv * len(self.vocab.decode_ranges)
            )
            # the full-vocabulary logits, the decoder's self-attention cache and activations
            model_bytes = 3 * 4 * self.vocab.size + cache_bytes + 8 * 4 * config.d_model
            self.decode_bytes_per_beam_pair = 0
        else:
            if config.architecture == "hf_causal_lm":
                self.model = build_causal_lm(config, self.vocab, item_text)
            else:
                self.model = SIDDecoder(
                    self.vocab,
                    config.d_model,
                    config.d_ff,
                    config.num_layers + config.num_decoder_layers,
                    config.num_heads,
                    config.d_kv,
                    config.dropout_rate,
                    config.max_item_seq_len,
                    config.position_encoding,
                )
            model_bytes = self.model.bytes_per_beam()
            self.decode_bytes_per_beam_pair = self.model.bytes_per_beam_pair()
        self.item_tokens = self.vocab.item_tokens(sids.codes)  # [n_items, levels], on the CPU, where inputs are built
        self.trie = self.vocab.trie(sids.codes)
        self.n_items = len(sids.codes)
        self.semantic_ids = sids  # what its checkpoints record (genrec.checkpoint)
        self.aggregation = aggregation
        self.constrained = config.constrained_decoding
        # An upper estimate of what one beam holds during a search: the level's scores and trie
        # lookups, and the backbone's logits, cache and activations (and, per pair of a user's beams,
        # what grows with the square of the width: decode_bytes_per_beam_pair).
        self.decode_bytes_per_beam = (4 + 8 + 8) * max(self.trie.level_sizes) + model_bytes
        items = list_length(tuple(config.metric_ks))
        for key in ("num_beams", "test_num_beams"):
            width = getattr(config, key)
            widened = search_width(self, width, items)
            if width > self.max_beams:
                log.warning(
                    "%s=%d is wider than the %d semantic IDs%s the decoder can generate: it decodes with %d beams, "
                    "which already score every one",
                    key,
                    width,
                    self.max_beams,
                    f" x {n_latent} latent tokens" if n_latent else "",
                    self.max_beams,
                )
            elif widened > width:
                log.info(
                    "%s=%d can hold fewer than %d items%s: evaluation decodes %d beams, so that every list holds %d "
                    "(set %s to at least that to silence this)",
                    key,
                    width,
                    items,
                    f" ({n_latent} latent tokens share the beam)" if n_latent else "",
                    widened,
                    items,
                    key,
                )

    def add_items(self, codes: np.ndarray, texts: list[dict[str, str]]) -> None:
        """Make new items (their semantic IDs ``codes``, unique against the catalogue's) generatable at
        once: their tokens are the IDs' codes, which the model already knows, and the trie gains
        their paths; with ``history_text`` their ``texts`` are read when they appear in a history.
        Item ``n_items + j`` is ``codes[j]``."""
        if getattr(self.model, "item_text", None) is not None:
            self.model.item_text.add(texts, grow=False)
        self.semantic_ids = with_new_items(self.semantic_ids, codes)
        every = self.semantic_ids.codes
        self.item_tokens = self.vocab.item_tokens(every)
        self.trie = self.vocab.trie(every)
        self.n_items = len(every)

    @property
    def max_beams(self) -> int:
        """The most distinct beams a search can hold: every valid ID (times latent tokens). A wider
        ``num_beams`` is decoded at this width (same result: :func:`genrec.decoding.beam_search`)."""
        return self.trie.n_prefixes[-1] if self.constrained else math.prod(self.trie.level_sizes)

    @property
    def beams_per_item(self) -> int:
        """The most final beams one item can fill: one per latent token (each decodes the item's ID
        once), else one (an ID is one item). :func:`genrec.ranking.search_width` widens by it."""
        return max(1, self.vocab.n_latent)

    def history_batch(self, histories: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """The backbone's inference inputs ``(ids, mask)`` for the histories, on the CPU."""
        prompt = self.model.prompt if self.learns_windows else self.vocab.histories
        return prompt(histories, self.item_tokens)

    def inputs(self, histories: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`history_batch` on the model's device."""
        return self.on_device(self.history_batch(histories))

    def training_batch(
        self, histories: list[np.ndarray], targets: np.ndarray, generator: torch.Generator
    ) -> tuple[torch.Tensor, ...]:
        """T5: ``(ids, mask, target tokens)`` of prefix examples, a latent token drawn per target for
        Latte. Decoder: ``(ids, trained)`` of windows (``histories`` the windows' items, ``targets``
        their ``loss_from``: :meth:`genrec.data.Windows.batch`), a latent token drawn per item."""
        if self.learns_windows:
            latents = (
                [torch.randint(self.vocab.n_latent, (len(w),), generator=generator) for w in histories]
                if self.vocab.n_latent
                else None
            )
            return self.model.window_batch(self.model.sequence_tokens(histories, self.item_tokens, latents), targets)
        ids, mask = self.history_batch(histories)
        target_tokens = self.item_tokens[torch.as_tensor(targets, dtype=torch.long)]
        if self.vocab.n_latent:
            latents = torch.randint(self.vocab.n_latent, (len(targets),), generator=generator)
            target_tokens = self.vocab.latent_targets(target_tokens, latents)
        return ids, mask, target_tokens

    def batch_loss(self, *batch: torch.Tensor) -> torch.Tensor:
        return self.model.window_loss(*batch) if self.learns_windows else self.model.loss(*batch)

    @torch.no_grad()
    def recommend_scored(
        self,
        histories: list[np.ndarray],
        k: int,
        num_beams: int,
        exclude: list[np.ndarray] | None = None,
        allowed: torch.Tensor | None = None,
        groups: int = 1,
        penalty: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, k] item indices, [B, k] log-probabilities)``, best first (Latte: aggregated over latent
        tokens); ``EMPTY`` (``-inf``) where fewer items were generated, ``INVALID`` for a generated ID
        that is no item (only without the trie constraint). Items of ``exclude[b]`` are removed from
        user ``b``'s final beam, which can leave fewer than ``k``. ``allowed`` (``[B, n_items]``
        booleans) restricts the search itself to those items: the trie is masked, so no beam is spent
        on the others. ``groups > 1``: a diverse beam search (:func:`genrec.decoding.beam_search`)."""
        chunk = self.users_per_search(num_beams)
        if len(histories) > chunk:  # decode in smaller groups rather than run out of memory
            parts = [
                self.recommend_scored(
                    histories[start : start + chunk],
                    k,
                    num_beams,
                    None if exclude is None else exclude[start : start + chunk],
                    None if allowed is None else allowed[start : start + chunk],
                    groups,
                    penalty,
                )
                for start in range(0, len(histories), chunk)
            ]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        ids, mask = self.inputs(histories)
        self.trie.to(ids.device)
        items, scores, _ = self.model.generate(
            ids,
            mask,
            self.trie,
            num_beams,
            self.constrained,
            None if allowed is None else allowed.to(ids.device),
            groups,
            penalty,
        )
        if self.vocab.n_latent:
            items, scores = aggregate_beams(items, scores, self.n_items, items.shape[1], self.aggregation)
        if exclude is not None:
            return drop_excluded(items, scores, exclusion_mask(exclude, self.n_items, items.device), k)
        return pad_ranked(items, scores, k)

    @torch.no_grad()
    def path_log_probs(self, histories: list[np.ndarray]) -> torch.Tensor:
        """``[B, paths, n_items]``: the exact log-probability of generating each item, per latent token
        for Latte (``paths = n_latent_tokens``), else one path. A constrained search as wide as the trie
        keeps every valid prefix at every level, so it is the decoding tree traversed level by level:
        one history pass per user and one decoder step per level, not one call per item."""
        width = self.trie.n_prefixes[-1]
        chunk = self.users_per_search(width)
        if len(histories) > chunk:
            return torch.cat(
                [self.path_log_probs(histories[start : start + chunk]) for start in range(0, len(histories), chunk)]
            )
        ids, mask = self.inputs(histories)
        self.trie.to(ids.device)
        items, scores, tokens = self.model.generate(ids, mask, self.trie, width, constrained=True)
        paths = max(1, self.vocab.n_latent)
        path = tokens[:, :, 0] if self.vocab.n_latent else torch.zeros_like(items)
        log_probs = torch.full((len(histories), paths * self.n_items), float("-inf"), device=ids.device)
        return log_probs.scatter_(1, path * self.n_items + items, scores).view(len(histories), paths, self.n_items)

    def users_per_search(self, num_beams: int) -> int:
        """How many users one beam search may decode together within half the free memory."""
        width = min(num_beams, self.max_beams)
        need = width * self.decode_bytes_per_beam + width**2 * self.decode_bytes_per_beam_pair
        budget = available_memory(self.device) // 2
        if need > budget:
            raise GenrecError(
                f"a beam of {num_beams} needs about {need / 2**30:.1f} GiB per user to decode, more than "
                f"half of the {2 * budget / 2**30:.1f} GiB free; lower num_beams / test_num_beams"
            )
        return max(1, budget // need)
