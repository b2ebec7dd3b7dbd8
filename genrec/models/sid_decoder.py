"""A decoder-only backbone over semantic-ID tokens (``architecture: decoder``), the alternative to the T5.

Why: the T5 re-encodes a user's whole history for every training prefix, so a training sequence of
``L`` items costs ``O(L^2)`` tokens per epoch. A causal decoder reads the sequence once and learns
every next item of it in that pass (the decoder-only family of generative recommenders, HSTU /
OneRec-V2 style): the tokens of item ``j`` are predicted from everything before them.

The token layout, prompts and training windows are those of every causal backbone
(:class:`genrec.models.sid_causal.CausalSIDBackbone`). Attention carries T5's learned relative
position bias (absolute position embeddings generalized far worse here: validation NDCG@10 0.52
against 0.69 for the T5 on Synthetic, docs/results.md), or, with ``position_encoding: rotary``, the
rotary positions of the LLM families (Llama, Qwen, Phi): an ablation that separates the position
encoding from everything else a Hugging Face backbone changes (docs/results.md).

Decoding (:meth:`SIDDecoder.beam_step`) prefills the history once per user and keeps its keys and
values per user, not per beam: the ``W`` beams of a user attend to them as a group plus to their
own few generated tokens, as :class:`genrec.models.t5_decoding.GroupedT5Decoder` does with the
encoder states. The tests hold it to exhaustive teacher-forced scoring.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.t5.modeling_t5 import T5Attention

from genrec.errors import GenrecError
from genrec.models.beam_cache import GeneratedKeys, length_groups
from genrec.models.sid_causal import CausalSIDBackbone, positions_of
from genrec.models.sid_seq2seq import SIDVocabulary


class RelativePositionBias(nn.Module):
    """T5's learned per-head bias for the bucketed distance from a query back to a key, shared by
    every block. Relative rather than absolute positions: "the item just before" means the same
    thing at every point of a window, which is what the model must generalize from."""

    def __init__(self, heads: int, buckets: int = 32, max_distance: int = 128):
        super().__init__()
        self.buckets, self.max_distance = buckets, max_distance
        self.bias = nn.Embedding(buckets, heads)

    def forward(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        """``[..., heads]`` for broadcastable position tensors."""
        bucket = T5Attention._relative_position_bucket(
            key_positions - query_positions,
            bidirectional=False,
            num_buckets=self.buckets,
            max_distance=self.max_distance,
        )
        return self.bias(bucket)


class RotaryPositions(nn.Module):
    """Rotary position embedding (RoFormer; Llama's ``rotate_half`` layout, base 10,000): a query or
    key at position ``p`` is rotated by ``p`` times each pair's frequency, so their product depends
    on the distance between them only. Applied to keys before they are cached, so a search reads
    them as they are."""

    def __init__(self, d_kv: int, base: float = 10_000.0):
        super().__init__()
        if d_kv % 2:
            raise GenrecError(f"position_encoding=rotary needs an even d_kv, got {d_kv}")
        self.register_buffer("inverse_frequency", base ** -(torch.arange(0, d_kv, 2).float() / d_kv), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotation of ``positions``: ``(cos, sin)`` ``[*positions.shape, d_kv / 2]``, computed once
        for every block's queries and keys (:func:`rotated`)."""
        angles = positions[..., None].to(self.inverse_frequency.dtype) * self.inverse_frequency
        return angles.cos(), angles.sin()


def rotated(x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``x`` ``[..., d_kv]`` turned by a :class:`RotaryPositions` rotation broadcastable to ``x.shape[:-1]``."""
    cos, sin = (part.to(x.dtype) for part in rotation)
    first, second = x.chunk(2, dim=-1)
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


class DecoderBlock(nn.Module):
    """Pre-norm causal self-attention and feed-forward."""

    def __init__(self, d_model: int, d_ff: int, heads: int, d_kv: int, dropout: float):
        super().__init__()
        self.heads, self.d_kv, self.dropout = heads, d_kv, dropout
        self.attention_norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * heads * d_kv, bias=False)
        self.out = nn.Linear(heads * d_kv, d_model, bias=False)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def project(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``q, k, v`` of shape ``[..., heads, T, d_kv]`` for ``hidden`` ``[..., T, d]``."""
        qkv = self.qkv(self.attention_norm(hidden)).unflatten(-1, (3, self.heads, self.d_kv))  # [..., T, 3, H, d_kv]
        return tuple(qkv.select(-3, i).transpose(-3, -2) for i in range(3))

    def finish(self, hidden: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Residual of the attention output (``[..., T, H * d_kv]``), then the feed-forward."""
        hidden = hidden + self.drop(self.out(attended))
        return hidden + self.drop(self.ff(self.ff_norm(hidden)))

    def forward(
        self, hidden: torch.Tensor, bias: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``bias`` ``[B or 1, H, T, T]``: the position bias, ``-inf`` where a query may not look;
        ``rotation``: the queries' and keys' rotary positions, if the backbone uses them."""
        q, k, v = self.project(hidden)
        if rotation is not None:
            q, k = rotated(q, rotation), rotated(k, rotation)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )
        return self.finish(hidden, attended.transpose(1, 2).flatten(2)), (k, v)


class SIDDecoder(CausalSIDBackbone):
    def __init__(
        self,
        vocab: SIDVocabulary,
        d_model: int,
        d_ff: int,
        num_blocks: int,
        num_heads: int,
        d_kv: int,
        dropout_rate: float,
        max_items: int,
        position_encoding: str = "relative_bias",
    ):
        super().__init__(vocab)
        self.embed = nn.Embedding(vocab.size, d_model)
        # exactly one of the two: the relative bias is added to attention scores, rotary turns q and k
        self.position_bias = (
            RelativePositionBias(num_heads, max_distance=(max_items + 1) * self.item_length)
            if position_encoding == "relative_bias"
            else None
        )
        self.rotary = RotaryPositions(d_kv) if position_encoding == "rotary" else None
        self.blocks = nn.ModuleList(
            DecoderBlock(d_model, d_ff, num_heads, d_kv, dropout_rate) for _ in range(num_blocks)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab.size, bias=False)
        self.drop = nn.Dropout(dropout_rate)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def bytes_per_beam(self) -> int:
        """Float32 bytes one beam holds in a search: its logits over the vocabulary, its generated keys
        and values (the history's are kept per user), and activations."""
        block = self.blocks[0]
        cache = 2 * 4 * len(self.blocks) * block.heads * block.d_kv * self.item_length
        return 3 * 4 * self.vocab.size + cache + 8 * 4 * self.embed.embedding_dim

    def attention_bias(self, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``[B, H or 1, T, T]`` position bias of ``positions`` ``[B, T]`` (zero with rotary positions),
        ``-inf`` where not ``allowed``."""
        if self.position_bias is None:
            return torch.zeros(allowed.shape, device=allowed.device).masked_fill(~allowed, float("-inf")).unsqueeze(1)
        bias = self.position_bias(positions[:, :, None], positions[:, None, :]).permute(0, 3, 1, 2)
        return bias.masked_fill(~allowed.unsqueeze(1), float("-inf"))

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list, torch.Tensor]:
        """Final hidden states ``[B, T, d]``, each block's keys/values and the tokens' positions, for
        left-padded ``ids``."""
        real = mask.bool()
        positions = positions_of(real)
        causal = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool, device=ids.device).tril()
        # a padded position sees itself only (its output is never read), a real one its real past
        allowed = (causal & real[:, None, :]) | torch.eye(ids.shape[1], dtype=torch.bool, device=ids.device)
        bias = self.attention_bias(positions, allowed)
        rotation = None if self.rotary is None else self.rotary(positions[:, None, :])  # [B, 1, T, d_kv / 2]
        hidden = self.drop(self.embed(ids))
        cache = []
        for block in self.blocks:
            hidden, kv = block(hidden, bias, rotation)
            cache.append(kv)
        return self.norm(hidden), cache, positions

    def states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(ids, mask)[0]

    def output_log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.head(hidden).float(), dim=-1)

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list, torch.Tensor]:
        """:meth:`hidden_states` of left-padded prompts, run in groups of similar length
        (:func:`genrec.models.beam_cache.length_groups`) so that little of the work is padding: the
        last hidden state ``[B, d]``, each block's history keys ``[B, H, d_kv, T]`` (transposed for
        the beams' queries) and values ``[B, H, T, d_kv]``, and the tokens' positions ``[B, T]``.
        What lies left of a row's own tokens is masked wherever it is read."""
        batch, length = ids.shape
        block = self.blocks[0]
        lengths = mask.sum(1)
        last, keys, values = None, [], []
        for rows in length_groups(lengths.cpu().numpy()):
            index = torch.as_tensor(rows, device=ids.device)
            size = int(lengths[index].max())
            hidden, cache, _ = self.hidden_states(ids[index, length - size :], mask[index, length - size :])
            if last is None:  # the states' own dtype (autocast may change it)
                last = hidden.new_empty(batch, hidden.shape[-1])
                keys = [cache[0][0].new_zeros(batch, block.heads, block.d_kv, length) for _ in self.blocks]
                values = [cache[0][1].new_zeros(batch, block.heads, length, block.d_kv) for _ in self.blocks]
            last[index] = hidden[:, -1]
            for i, (k, v) in enumerate(cache):
                keys[i][index, :, :, length - size :] = k.transpose(-1, -2)
                values[i][index, :, length - size :] = v
        positions = positions_of(mask)
        return last, list(zip(keys, values)), positions

    def beam_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """A ``step`` for :func:`genrec.decoding.beam_search`: prefills the history once, then feeds one
        token per beam. The generated tokens' keys stay where their step wrote them
        (:class:`genrec.models.beam_cache.GeneratedKeys`); the history's are read per user."""
        last_hidden, history, history_positions = self.prefill(input_ids, attention_mask)
        first_log_probs = self.output_log_probs(last_hidden)  # [B, vocab]: the next item's first token
        padding = last_hidden.new_zeros(attention_mask.shape).masked_fill(attention_mask == 0, float("-inf"))
        next_position = attention_mask.sum(1)  # [B]
        ranges = self.vocab.decode_ranges
        generated = GeneratedKeys(len(self.blocks))
        heads, d_kv = self.blocks[0].heads, self.blocks[0].d_kv
        scale = d_kv**-0.5

        def step(level: int, tokens: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
            batch, width = parents.shape
            if level == 0:
                log_probs = first_log_probs.unsqueeze(1).expand(-1, width, -1)
            else:
                generated.reorder(parents)
                last = tokens[:, :, -1] + ranges[level - 1][0]  # [B, W]
                position = next_position + level - 1  # [B]: of the token fed now
                if self.position_bias is None:  # rotary: the positions are in the queries and keys
                    rotation = self.rotary(position[:, None, None])  # [B, 1, 1, d_kv / 2]: one for every block
                    history_bias = padding[:, None, None, :]  # [B, 1, 1, T]
                    generated_bias = padding.new_zeros(level, heads)
                else:
                    history_bias = (
                        self.position_bias(position[:, None], history_positions).permute(0, 2, 1)[:, :, None, :]
                        + padding[:, None, None, :]
                    )  # [B, H, 1, T]
                    steps_back = torch.arange(1 - level, 1, device=input_ids.device)  # the generated tokens' distances
                    generated_bias = self.position_bias(torch.zeros_like(steps_back), steps_back)  # [t, H]
                generated.start(batch, width)
                state = self.embed(last)  # [B, W, d]
                for i, block in enumerate(self.blocks):
                    q, k, v = block.qkv(block.attention_norm(state)).view(batch, width, 3, heads, d_kv).unbind(2)
                    if self.rotary is not None:
                        q, k = rotated(q, rotation), rotated(k, rotation)
                    generated.add(i, k.reshape(batch * width, heads, d_kv), v.reshape(batch * width, heads, d_kv))
                    history_keys, history_values = history[i]
                    to_history = torch.matmul(q.transpose(1, 2), history_keys).mul_(scale).add_(history_bias)
                    to_generated = (generated.scores(i, q) * scale + generated_bias[:, None, None, :]).permute(
                        1, 3, 2, 0
                    )
                    weights = torch.cat([to_history, to_generated], dim=-1).softmax(-1)  # [B, H, W, T + t]
                    attended = torch.matmul(weights[..., : history_keys.shape[-1]], history_values).transpose(1, 2)
                    attended = attended + generated.attend(
                        i, weights[..., history_keys.shape[-1] :].permute(3, 0, 2, 1)
                    )
                    state = block.finish(state, attended.flatten(2))
                log_probs = self.output_log_probs(self.norm(state))
            first, size = ranges[level]
            return log_probs[..., first : first + size]

        return step
