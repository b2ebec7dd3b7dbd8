"""Incremental T5 decoding for beam search, on the weights of a Hugging Face ``T5ForConditionalGeneration``.

Why not the library's own cached forward: all beams of a user attend to the same encoder states, but
a batch-of-beams forward stores and reads the cross-attention keys/values once per beam. Here they are
projected once per user (``[B, heads, T, d_kv]``) and the ``W`` beam queries of that user are grouped
against them, so cross-attention costs no more with 500 beams than with one. The self-attention cache
holds the few generated positions per beam and is reordered with the surviving beams. The tests check
the result against the library's teacher-forced forward (exhaustive scoring).
"""

from __future__ import annotations

import torch
from transformers import T5ForConditionalGeneration


class GroupedT5Decoder:
    def __init__(self, t5: T5ForConditionalGeneration, encoded: torch.Tensor, attention_mask: torch.Tensor):
        decoder = t5.decoder
        self.t5, self.blocks = t5, decoder.block
        self.heads, self.d_kv = t5.config.num_heads, t5.config.d_kv
        batch, length, _ = encoded.shape
        self.cross = []
        for block in self.blocks:
            attention = block.layer[1].EncDecAttention
            keys = attention.k(encoded).view(batch, length, self.heads, self.d_kv).transpose(1, 2)
            values = attention.v(encoded).view(batch, length, self.heads, self.d_kv).transpose(1, 2)
            self.cross.append((keys, values))
        finfo = torch.finfo(encoded.dtype)
        self.cross_bias = (1.0 - attention_mask[:, None, None, :].to(encoded.dtype)) * finfo.min  # [B, 1, 1, T]
        self.self_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per block: [B, W, heads, t, d_kv]

    def reorder(self, parents: torch.Tensor) -> None:
        """Keep the self-attention cache of the beams each new beam extends (``parents``: ``[B, W]``)."""
        index = parents[:, :, None, None, None]
        self.self_cache = [
            tuple(c.gather(1, index.expand(-1, -1, *c.shape[2:])) for c in pair) for pair in self.self_cache
        ]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per beam (``[B, W]``); returns logits ``[B, W, vocab]``."""
        batch, width = tokens.shape
        hidden = self.t5.decoder.embed_tokens(tokens)  # [B, W, d]
        position = 0 if self.self_cache is None else self.self_cache[0][0].shape[3]
        bias = self.position_bias(position, tokens.device)  # [1, 1, heads, t]
        new_cache = []
        for i, block in enumerate(self.blocks):
            attention = block.layer[0].SelfAttention
            normed = block.layer[0].layer_norm(hidden)
            q, k, v = (
                proj(normed).view(batch, width, self.heads, 1, self.d_kv)
                for proj in (attention.q, attention.k, attention.v)
            )
            if self.self_cache is not None:
                k = torch.cat([self.self_cache[i][0], k], dim=3)
                v = torch.cat([self.self_cache[i][1], v], dim=3)
            new_cache.append((k, v))
            scores = (q * k).sum(-1) + bias  # [B, W, heads, t] (T5 does not scale the dot product)
            attended = (scores.softmax(-1).unsqueeze(-1) * v).sum(3)  # [B, W, heads, d_kv]
            hidden = hidden + attention.o(attended.reshape(batch, width, -1))

            cross = block.layer[1]
            normed = cross.layer_norm(hidden)
            q = (
                cross.EncDecAttention.q(normed).view(batch, width, self.heads, self.d_kv).transpose(1, 2)
            )  # [B, heads, W, d_kv]
            keys, values = self.cross[i]
            weights = (q @ keys.transpose(-1, -2) + self.cross_bias).softmax(-1)  # [B, heads, W, T]
            attended = (weights @ values).transpose(1, 2).reshape(batch, width, -1)
            hidden = hidden + cross.EncDecAttention.o(attended)
            hidden = block.layer[2](hidden)
        self.self_cache = new_cache
        hidden = self.t5.decoder.final_layer_norm(hidden)
        config = self.t5.config  # T5 rescales before a tied output projection (the flag's name changed in 5.0)
        if getattr(config, "scale_decoder_outputs", config.tie_word_embeddings):
            hidden = hidden * (config.d_model**-0.5)
        return self.t5.lm_head(hidden)

    def position_bias(self, position: int, device: torch.device) -> torch.Tensor:
        """``[1, 1, heads, position + 1]``: the decoder's relative-position bias of the query at
        ``position`` over keys ``0 .. position``. Computed here from T5's bucket rule and the first
        block's bias table (the library's ``compute_bias`` changed its signature between releases)."""
        attention = self.blocks[0].layer[0].SelfAttention
        relative = torch.arange(position + 1, device=device) - position  # key - query: 0 or negative
        buckets = attention._relative_position_bucket(
            relative,
            bidirectional=False,
            num_buckets=attention.relative_attention_num_buckets,
            max_distance=attention.relative_attention_max_distance,
        )
        return attention.relative_attention_bias(buckets).T[None, None]
