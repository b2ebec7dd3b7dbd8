"""The encoder-decoder shared by TIGER, PSID and Latte: a T5 built from config (no pretrained
weights) that reads a history of semantic IDs and generates the next item's ID.

Token layout (:class:`SIDVocabulary`): ``0`` pad (also the decoder start), ``1`` end, then the
latent tokens (Latte), then one range per semantic-ID level, so the same code at two levels is two
different tokens. Decoding is :func:`genrec.decoding.beam_search` driven by :meth:`SIDSeq2Seq.beam_step`
(:class:`genrec.models.t5_decoding.GroupedT5Decoder`: cached, beams grouped per user).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration

from genrec.decoding import SIDTrie, beam_search
from genrec.models.beam_cache import length_groups
from genrec.models.t5_decoding import GroupedT5Decoder

PAD, EOS = 0, 1


@dataclass(frozen=True)
class SIDVocabulary:
    """``permutations``: Latte's latent token ``k`` bound to an order of the ID levels (the target is
    generated in that order). Each level keeps its own token range, so a code is the same token
    wherever it is generated; every generated position then chooses among all levels' codes, and the
    trie (:meth:`trie`) allows only the level its latent token puts there."""

    level_sizes: tuple[int, ...]
    n_latent: int = 0
    permutations: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self):
        if self.permutations and len(self.permutations) != self.n_latent:
            raise ValueError(f"{len(self.permutations)} level orders for {self.n_latent} latent tokens")

    @property
    def level_offsets(self) -> list[int]:
        start = 2 + self.n_latent
        return [start + sum(self.level_sizes[:level]) for level in range(len(self.level_sizes))]

    @property
    def size(self) -> int:
        return 2 + self.n_latent + sum(self.level_sizes)

    @property
    def decode_ranges(self) -> list[tuple[int, int]]:
        """(first token, size) of each generated position: the latent token first, when there is one."""
        ranges = [(2, self.n_latent)] if self.n_latent else []
        if self.permutations:
            return ranges + [(self.level_offsets[0], sum(self.level_sizes))] * len(self.level_sizes)
        return ranges + list(zip(self.level_offsets, self.level_sizes))

    def latent_targets(self, item_tokens: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """``[N, 1 + levels]``: latent token ``latents[n]`` then item ``n``'s ID tokens (``item_tokens``
        ``[N, levels]``), in the level order that latent token is bound to."""
        if self.permutations:
            order = torch.as_tensor(self.permutations, device=item_tokens.device)[latents]
            item_tokens = item_tokens.gather(1, order)
        return torch.cat([latents.unsqueeze(1) + 2, item_tokens], dim=1)

    def trie(self, codes: np.ndarray) -> SIDTrie:
        """The valid generated sequences of items with semantic IDs ``codes``, in local codes of each
        position (see :attr:`decode_ranges`); its leaves are item indices."""
        if not self.permutations:
            return SIDTrie(codes, list(self.level_sizes), free_prefix_size=self.n_latent)
        union = np.asarray(codes) + np.cumsum([0, *self.level_sizes[:-1]])  # each level's codes in one range
        rows = np.concatenate(
            [
                np.column_stack([np.full(len(union), k), union[:, list(order)]])
                for k, order in enumerate(self.permutations)
            ]
        )
        sizes = [self.n_latent] + [sum(self.level_sizes)] * len(self.level_sizes)
        return SIDTrie(rows, sizes, leaf_items=np.tile(np.arange(len(union)), self.n_latent))

    def item_tokens(self, codes: np.ndarray) -> torch.Tensor:
        """``[n_items, levels]`` global token ids of every item's semantic ID."""
        return torch.as_tensor(np.asarray(codes) + np.array(self.level_offsets)[None, :], dtype=torch.long)

    def histories(self, histories: list[np.ndarray], item_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened, right-padded encoder inputs (each item's tokens in order, then end)."""
        length = max(len(h) for h in histories) * item_tokens.shape[1] + 1
        ids = torch.full((len(histories), length), PAD, dtype=torch.long)
        for row, history in enumerate(histories):
            tokens = item_tokens[torch.as_tensor(history, dtype=torch.long)].flatten()
            ids[row, : len(tokens)] = tokens
            ids[row, len(tokens)] = EOS
        return ids, (ids != PAD).long()


class SIDBackbone(nn.Module):
    """What decoding needs of a backbone over semantic-ID tokens: a ``beam_step(input_ids,
    attention_mask)`` that returns the ``step`` of :func:`beam_search`."""

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        trie: SIDTrie,
        num_beams: int,
        constrained: bool = True,
        allowed: torch.Tensor | None = None,
        groups: int = 1,
        penalty: float = 0.0,
    ):
        """Beam search (constrained to the trie unless told otherwise; each row to its ``allowed``
        items when given; diverse over ``groups``): ``(items, scores, tokens)`` as :func:`beam_search`."""
        step = self.beam_step(input_ids, attention_mask)
        return beam_search(
            step, trie, input_ids.shape[0], num_beams, input_ids.device, constrained, allowed, groups, penalty
        )


class SIDSeq2Seq(SIDBackbone):
    def __init__(
        self,
        vocab: SIDVocabulary,
        d_model: int,
        d_ff: int,
        num_layers: int,
        num_decoder_layers: int,
        num_heads: int,
        d_kv: int,
        dropout_rate: float,
    ):
        super().__init__()
        self.vocab = vocab
        config = T5Config(
            vocab_size=vocab.size,
            d_model=d_model,
            d_ff=d_ff,
            d_kv=d_kv,
            num_layers=num_layers,
            num_decoder_layers=num_decoder_layers,
            num_heads=num_heads,
            dropout_rate=dropout_rate,
            feed_forward_proj="relu",
            pad_token_id=PAD,
            eos_token_id=EOS,
            decoder_start_token_id=PAD,
        )
        self.t5 = T5ForConditionalGeneration(config)

    def token_log_probs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """``[B, T]`` log-probability of each target token under teacher forcing (targets start
        with the first generated token; the decoder input is them shifted right)."""
        decoder_input = torch.cat([torch.full_like(targets[:, :1], PAD), targets[:, :-1]], dim=1)
        logits = self.t5(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input).logits
        return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    def loss(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy over the target ID followed by the end token."""
        with_end = torch.cat([targets, torch.full_like(targets[:, :1], EOS)], dim=1)
        return -self.token_log_probs(input_ids, attention_mask, with_end).mean()

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, T, d]`` encoder states of right-padded histories, encoded in groups of similar length
        (:func:`genrec.models.beam_cache.length_groups`) so that little of the work is padding; what
        lies past a row's length is masked by ``attention_mask`` wherever it is read."""
        encoder = self.t5.get_encoder()
        lengths = attention_mask.sum(1)
        encoded = None
        for rows in length_groups(lengths.cpu().numpy()):
            index = torch.as_tensor(rows, device=input_ids.device)
            length = int(lengths[index].max())
            states = encoder(input_ids=input_ids[index, :length], attention_mask=attention_mask[index, :length])
            if encoded is None:  # the states' own dtype (autocast may change it)
                encoded = states.last_hidden_state.new_zeros(*input_ids.shape, states.last_hidden_state.shape[-1])
            encoded[index, :length] = states.last_hidden_state
        return encoded

    def beam_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """A ``step`` for :func:`beam_search`: encodes once, then feeds one token per beam and level
        through :class:`GroupedT5Decoder`, whose cache follows the beams' parents."""
        decoder = GroupedT5Decoder(self.t5, self.encode(input_ids, attention_mask), attention_mask)
        ranges = self.vocab.decode_ranges

        def step(level: int, tokens: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
            if level == 0:
                last = torch.full(parents.shape, PAD, dtype=torch.long, device=input_ids.device)
            else:
                decoder.reorder(parents)
                last = tokens[:, :, -1] + ranges[level - 1][0]
            first, size = ranges[level]
            return torch.log_softmax(decoder.step(last).float(), dim=-1)[..., first : first + size]

        return step
