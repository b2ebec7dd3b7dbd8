"""A decoder-only backbone over semantic-ID tokens (``architecture: decoder``), the alternative to the T5.

Why: the T5 re-encodes a user's whole history for every training prefix, so a training sequence of
``L`` items costs ``O(L^2)`` tokens per epoch. A causal decoder reads the sequence once and learns
every next item of it in that pass (the decoder-only family of generative recommenders, HSTU /
OneRec-V2 style): the tokens of item ``j`` are predicted from everything before them.

Token layout (the :class:`SIDVocabulary` of the T5): ``1`` starts a sequence, then each item's
tokens in order; with Latte's latent tokens every item is ``[latent, code_1, ..., code_D]``. In
training each item's latent token is drawn uniformly (so as context it carries no information);
at inference the history's latent tokens follow a fixed cycle (item ``j``: latent ``j mod n``)
and the target's is generated. Attention carries T5's learned relative position bias (absolute
position embeddings generalized far worse here: validation NDCG@10 0.52 against 0.69 for the T5 on
Synthetic, docs/results.md). Histories are left-padded for inference, so the generated tokens of
every user sit at the same column; positions count from each sequence's own first token.

Decoding (:meth:`SIDDecoder.beam_step`) prefills the history once per user and keeps its keys and
values per user, not per beam: the ``W`` beams of a user attend to them as a group plus to their
own few generated tokens, as :class:`genrec.models.t5_decoding.GroupedT5Decoder` does with the
encoder states. The tests hold it to exhaustive teacher-forced scoring.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.t5.modeling_t5 import T5Attention

from genrec.models.beam_cache import GeneratedKeys, length_groups
from genrec.models.sid_seq2seq import EOS, PAD, SIDBackbone, SIDVocabulary

START = EOS  # the token that opens every sequence (no end token is needed: IDs have a fixed length)


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
        self, hidden: torch.Tensor, bias: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``bias`` ``[B or 1, H, T, T]``: the position bias, ``-inf`` where a query may not look."""
        q, k, v = self.project(hidden)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )
        return self.finish(hidden, attended.transpose(1, 2).flatten(2)), (k, v)


class SIDDecoder(SIDBackbone):
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
    ):
        super().__init__()
        self.vocab = vocab
        self.item_length = len(vocab.decode_ranges)  # tokens per item, the latent one included
        self.embed = nn.Embedding(vocab.size, d_model)
        self.position_bias = RelativePositionBias(num_heads, max_distance=(max_items + 1) * self.item_length)
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

    def cache_bytes_per_beam(self) -> int:
        """Float32 bytes one beam's generated keys and values take in a search (for memory planning)."""
        block = self.blocks[0]
        return 2 * 4 * len(self.blocks) * block.heads * block.d_kv * self.item_length

    def sequence_tokens(
        self, items: list[np.ndarray], item_tokens: torch.Tensor, latents: list[torch.Tensor] | None
    ) -> list[torch.Tensor]:
        """Each item sequence as tokens: the start token, then every item's (latent and) ID tokens."""
        sequences = []
        for row, sequence in enumerate(items):
            tokens = item_tokens[torch.as_tensor(sequence, dtype=torch.long)]
            if latents is not None:
                tokens = self.vocab.latent_targets(tokens, latents[row])
            sequences.append(torch.cat([torch.tensor([START]), tokens.flatten()]))
        return sequences

    def history_latents(self, histories: list[np.ndarray]) -> list[torch.Tensor] | None:
        """The fixed latent tokens of inference histories (item ``j``: ``j mod n``), or None without them."""
        if not self.vocab.n_latent:
            return None
        return [torch.arange(len(h)) % self.vocab.n_latent for h in histories]

    def prompt(self, histories: list[np.ndarray], item_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded inference inputs ``(ids, mask)`` ``[B, T]``: start token then the history's tokens."""
        sequences = self.sequence_tokens(histories, item_tokens, self.history_latents(histories))
        length = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), length), PAD, dtype=torch.long)
        for row, tokens in enumerate(sequences):
            ids[row, length - len(tokens) :] = tokens
        return ids, (ids != PAD).long()

    def attention_bias(self, positions: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``[B, H, T, T]`` position bias of ``positions`` ``[B, T]``, ``-inf`` where not ``allowed``."""
        bias = self.position_bias(positions[:, :, None], positions[:, None, :]).permute(0, 3, 1, 2)
        return bias.masked_fill(~allowed.unsqueeze(1), float("-inf"))

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list, torch.Tensor]:
        """Final hidden states ``[B, T, d]``, each block's keys/values and the tokens' positions, for
        left-padded ``ids``."""
        real = mask.bool()
        positions = (real.long().cumsum(1) - 1).clamp_min(0)
        causal = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool, device=ids.device).tril()
        # a padded position sees itself only (its output is never read), a real one its real past
        allowed = (causal & real[:, None, :]) | torch.eye(ids.shape[1], dtype=torch.bool, device=ids.device)
        bias = self.attention_bias(positions, allowed)
        hidden = self.drop(self.embed(ids))
        cache = []
        for block in self.blocks:
            hidden, kv = block(hidden, bias)
            cache.append(kv)
        return self.norm(hidden), cache, positions

    def token_log_probs(self, ids: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[B, T']`` log-probability of each target token when ``targets`` follow the left-padded
        prompt ``ids`` (teacher forcing over the whole vocabulary, as the T5's)."""
        full = torch.cat([ids, targets], dim=1)
        hidden, _, _ = self.hidden_states(full, torch.cat([mask, torch.ones_like(targets)], dim=1))
        logits = self.head(hidden[:, ids.shape[1] - 1 : -1])
        return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    def window_batch(self, windows: list[torch.Tensor], loss_from: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, trained)`` ``[B, T]``: the windows' sequence tokens (start token first), right-padded,
        and which tokens are trained (those of window ``k``'s items from ``loss_from[k]`` on)."""
        length = max(len(w) for w in windows)
        ids = torch.full((len(windows), length), PAD, dtype=torch.long)
        trained = torch.zeros(len(windows), length, dtype=torch.bool)
        for row, tokens in enumerate(windows):
            ids[row, : len(tokens)] = tokens
            trained[row, 1 + int(loss_from[row]) * self.item_length : len(tokens)] = True
        return ids, trained

    def window_log_probs(self, ids: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
        """``[B, T]``: the log-probability of each trained token of a :meth:`window_batch` given the
        tokens before it, all computed in one causal pass (0 where not trained)."""
        length = ids.shape[1]
        positions = torch.arange(length, device=ids.device)[None]
        causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()[None]
        bias = self.attention_bias(positions, causal)  # right padding: real tokens never see a padded one
        hidden = self.drop(self.embed(ids))
        for block in self.blocks:
            hidden, _ = block(hidden, bias)
        log_probs = torch.zeros(ids.shape, device=ids.device)
        predictors = self.norm(hidden[:, :-1][trained[:, 1:]])  # the position before each trained token
        log_probs[:, 1:][trained[:, 1:]] = -F.cross_entropy(
            self.head(predictors).float(), ids[:, 1:][trained[:, 1:]], reduction="none"
        )
        return log_probs

    def window_loss(self, ids: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over the trained tokens of a :meth:`window_batch`."""
        return -self.window_log_probs(ids, trained)[trained].mean()

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
        positions = (mask.long().cumsum(1) - 1).clamp_min(0)
        return last, list(zip(keys, values)), positions

    def beam_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """A ``step`` for :func:`genrec.decoding.beam_search`: prefills the history once, then feeds one
        token per beam. The generated tokens' keys stay where their step wrote them
        (:class:`genrec.models.beam_cache.GeneratedKeys`); the history's are read per user."""
        last_hidden, history, history_positions = self.prefill(input_ids, attention_mask)
        first_logits = self.head(last_hidden)  # [B, vocab]: the next item's first token
        padding = last_hidden.new_zeros(attention_mask.shape).masked_fill(attention_mask == 0, float("-inf"))
        next_position = attention_mask.sum(1)  # [B]
        ranges = self.vocab.decode_ranges
        generated = GeneratedKeys(len(self.blocks))
        heads, d_kv = self.blocks[0].heads, self.blocks[0].d_kv
        scale = d_kv**-0.5

        def step(level: int, tokens: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
            batch, width = parents.shape
            if level == 0:
                logits = first_logits.unsqueeze(1).expand(-1, width, -1)
            else:
                generated.reorder(parents)
                last = tokens[:, :, -1] + ranges[level - 1][0]  # [B, W]
                position = next_position + level - 1  # [B]: of the token fed now
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
                logits = self.head(self.norm(state))
            first, size = ranges[level]
            return torch.log_softmax(logits.float(), dim=-1)[..., first : first + size]

        return step
