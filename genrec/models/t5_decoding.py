"""Incremental T5 decoding for beam search, on the weights of a Hugging Face ``T5ForConditionalGeneration``.

Why not the library's own cached forward: all beams of a user attend to the same encoder states, but
a batch-of-beams forward stores and reads the cross-attention keys/values once per beam. Here they are
projected once per user (``[B, heads, T, d_kv]``) and the ``W`` beam queries of that user are grouped
against them, so cross-attention costs no more with 500 beams than with one. The generated tokens'
keys stay where their step wrote them (:class:`genrec.models.beam_cache.GeneratedKeys`: a reorder
moves indices, not keys), the query, key and value projections are one matrix product, and the
norms are torch's ``F.rms_norm``: the few large matrix products are most of what remains of a step. The
tests check the result against the library's teacher-forced forward (exhaustive scoring).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import T5ForConditionalGeneration

from genrec.models.beam_cache import GeneratedKeys


class GroupedT5Decoder:
    def __init__(self, t5: T5ForConditionalGeneration, encoded: torch.Tensor, attention_mask: torch.Tensor):
        decoder, config = t5.decoder, t5.config
        self.t5, self.blocks = t5, decoder.block
        self.heads, self.d_kv, self.eps = config.num_heads, config.d_kv, config.layer_norm_epsilon
        batch, length, _ = encoded.shape
        self.self_qkv, self.cross_keys, self.cross_values = [], [], []
        for block in self.blocks:
            attention = block.layer[0].SelfAttention
            self.self_qkv.append(torch.cat([attention.q.weight, attention.k.weight, attention.v.weight]))
            cross = block.layer[1].EncDecAttention
            keys = cross.k(encoded).view(batch, length, self.heads, self.d_kv)
            self.cross_keys.append(keys.permute(0, 2, 3, 1).contiguous())  # [B, heads, d_kv, T]
            values = cross.v(encoded).view(batch, length, self.heads, self.d_kv)
            self.cross_values.append(values.transpose(1, 2).contiguous())  # [B, heads, T, d_kv]
        finfo = torch.finfo(encoded.dtype)
        self.cross_bias = (1.0 - attention_mask[:, None, None, :].to(encoded.dtype)) * finfo.min  # [B, 1, 1, T]
        self.generated = GeneratedKeys(len(self.blocks))

    def reorder(self, parents: torch.Tensor) -> None:
        """The beams each new beam extends (``parents``: ``[B, W]``); the cached keys stay in place."""
        self.generated.reorder(parents)

    def norm(self, hidden: torch.Tensor, layer_norm: torch.nn.Module) -> torch.Tensor:
        """T5's RMS norm (no mean, no bias), as torch's ``F.rms_norm``."""
        return F.rms_norm(hidden, hidden.shape[-1:], layer_norm.weight, self.eps)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one token per beam (``[B, W]``); returns logits ``[B, W, vocab]``."""
        batch, width = tokens.shape
        heads, d_kv = self.heads, self.d_kv
        hidden = self.t5.decoder.embed_tokens(tokens)  # [B, W, d]
        self.generated.start(batch, width)
        bias = self.position_bias(len(self.generated) - 1, tokens.device)[:, None, None, :]  # [t, 1, 1, heads]
        for i, block in enumerate(self.blocks):
            attention = block.layer[0].SelfAttention
            q, k, v = (
                F.linear(self.norm(hidden, block.layer[0].layer_norm), self.self_qkv[i])
                .view(batch, width, 3, heads, d_kv)
                .unbind(2)
            )
            self.generated.add(i, k.reshape(batch * width, heads, d_kv), v.reshape(batch * width, heads, d_kv))
            weights = (self.generated.scores(i, q) + bias).softmax(0)  # T5 does not scale the dot product
            hidden = hidden + attention.o(self.generated.attend(i, weights).reshape(batch, width, -1))

            cross = block.layer[1]
            q = cross.EncDecAttention.q(self.norm(hidden, cross.layer_norm))
            q = q.view(batch, width, heads, d_kv).transpose(1, 2)  # [B, heads, W, d_kv]
            weights = torch.matmul(q, self.cross_keys[i]).add_(self.cross_bias).softmax(-1)  # [B, heads, W, T]
            attended = torch.matmul(weights, self.cross_values[i]).transpose(1, 2).reshape(batch, width, -1)
            hidden = hidden + cross.EncDecAttention.o(attended)
            ff = block.layer[2]  # ReLU in place: the model is built with feed_forward_proj="relu"
            inner = F.linear(self.norm(hidden, ff.layer_norm), ff.DenseReluDense.wi.weight).relu_()
            hidden = hidden + F.linear(inner, ff.DenseReluDense.wo.weight)
        hidden = self.norm(hidden, self.t5.decoder.final_layer_norm)
        config = self.t5.config  # T5 rescales before a tied output projection (the flag's name changed in 5.0)
        if getattr(config, "scale_decoder_outputs", config.tie_word_embeddings):
            hidden = hidden * (config.d_model**-0.5)
        return self.t5.lm_head(hidden)

    def position_bias(self, position: int, device: torch.device) -> torch.Tensor:
        """``[position + 1, heads]``: the decoder's relative-position bias of the query at
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
        return attention.relative_attention_bias(buckets)
