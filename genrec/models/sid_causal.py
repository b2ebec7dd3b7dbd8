"""What every causal backbone over semantic-ID sequences shares (genrec's own decoder,
:mod:`genrec.models.sid_decoder`, and any Hugging Face causal LM, :mod:`genrec.models.sid_causal_lm`):
the token layout of a user's sequence, left-padded inference prompts and right-padded training
windows. Kept in one place so that the two backbones read and learn exactly the same sequences, and
a comparison between them compares the networks alone.

Token layout (the :class:`SIDVocabulary` of the T5): ``1`` starts a sequence, then each item's
tokens in order; with Latte's latent tokens every item is ``[latent, code_1, ..., code_D]``. In
training each item's latent token is drawn uniformly (so as context it carries no information);
at inference the history's latent tokens follow a fixed cycle (item ``j``: latent ``j mod n``)
and the target's is generated. With ``history_text`` (:mod:`genrec.models.history_text`) each
item's text tokens follow its ID tokens. Histories are left-padded for inference, so the generated
tokens of every user sit at the same column; positions count from each sequence's own first token.
"""

from __future__ import annotations

import numpy as np
import torch

from genrec.models.history_text import ItemText
from genrec.models.sid_seq2seq import EOS, PAD, SIDBackbone, SIDVocabulary

START = EOS  # the token that opens every sequence (no end token is needed: IDs have a fixed length)


def positions_of(mask: torch.Tensor) -> torch.Tensor:
    """Each token's position counted from its row's first real token (``mask`` ``[B, T]``, left
    padding; 0 on the padding)."""
    return (mask.long().cumsum(1) - 1).clamp_min(0)


class CausalSIDBackbone(SIDBackbone):
    """A backbone that reads a whole sequence causally. Subclasses provide :meth:`states`,
    :meth:`output_log_probs`, ``beam_step`` and ``bytes_per_beam`` (what one beam of a search holds:
    its full-output logits, key/value cache and activations, for memory planning; and
    :meth:`bytes_per_beam_pair` where a search holds more); teacher-forced scoring and window training
    are defined here once, from the first two."""

    def __init__(self, vocab: SIDVocabulary):
        super().__init__()
        self.vocab = vocab
        self.item_length = len(vocab.decode_ranges)  # ID tokens per item, the latent one included
        self.item_text: ItemText | None = None  # history_text: the items' text tokens, after their IDs

    def bytes_per_beam_pair(self) -> int:
        """Float32 bytes a search holds for each pair of one user's beams, besides ``bytes_per_beam``:
        what grows with the square of the beam width (nothing, unless a backbone says so)."""
        return 0

    def sequence_tokens(
        self, items: list[np.ndarray], item_tokens: torch.Tensor, latents: list[torch.Tensor] | None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each item sequence as ``(tokens, owners)``: the start token, then every item's (latent and) ID
        tokens (and its text, with ``item_text``); ``owners`` the item each ID token belongs to (its
        position in the sequence), ``-1`` for the start token and text."""
        sequences = []
        for row, sequence in enumerate(items):
            indices = torch.as_tensor(sequence, dtype=torch.long)
            tokens = item_tokens[indices]
            if latents is not None:
                tokens = self.vocab.latent_targets(tokens, latents[row])
            if self.item_text is None:
                owners = torch.arange(len(indices)).repeat_interleave(tokens.shape[1])
                tokens = tokens.flatten()
            else:
                tokens, owners = self.item_text.interleaved(indices, tokens)
            sequences.append((torch.cat([torch.tensor([START]), tokens]), torch.cat([torch.tensor([-1]), owners])))
        return sequences

    def history_latents(self, histories: list[np.ndarray]) -> list[torch.Tensor] | None:
        """The fixed latent tokens of inference histories (item ``j``: ``j mod n``), or None without them."""
        if not self.vocab.n_latent:
            return None
        return [torch.arange(len(h)) % self.vocab.n_latent for h in histories]

    def prompt(self, histories: list[np.ndarray], item_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded inference inputs ``(ids, mask)`` ``[B, T]``: start token then the history's tokens."""
        sequences = [t for t, _ in self.sequence_tokens(histories, item_tokens, self.history_latents(histories))]
        length = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), length), PAD, dtype=torch.long)
        for row, tokens in enumerate(sequences):
            ids[row, length - len(tokens) :] = tokens
        return ids, (ids != PAD).long()

    def window_batch(
        self, windows: list[tuple[torch.Tensor, torch.Tensor]], loss_from: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, trained)`` ``[B, T]``: the windows' :meth:`sequence_tokens` (start token first),
        right-padded, and which tokens are trained (the ID tokens of window ``k``'s items from
        ``loss_from[k]`` on)."""
        length = max(len(tokens) for tokens, _ in windows)
        ids = torch.full((len(windows), length), PAD, dtype=torch.long)
        trained = torch.zeros(len(windows), length, dtype=torch.bool)
        for row, (tokens, owners) in enumerate(windows):
            ids[row, : len(tokens)] = tokens
            trained[row, : len(tokens)] = owners >= int(loss_from[row])
        return ids, trained

    def states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, T, d]`` final hidden states of token sequences ``ids`` in one causal pass; ``mask`` marks
        the real tokens (left padding: positions count from each row's first real token)."""
        raise NotImplementedError

    def output_log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., vocab.size]`` log-probabilities of genrec's tokens next after ``hidden`` ``[..., d]``,
        normalised over the backbone's whole output (a language model's text tokens included)."""
        raise NotImplementedError

    def token_log_probs(self, ids: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``[B, T']`` log-probability of each target token when ``targets`` follow the left-padded
        prompt ``ids`` (teacher forcing over the whole vocabulary, as the T5's)."""
        hidden = self.states(torch.cat([ids, targets], dim=1), torch.cat([mask, torch.ones_like(targets)], dim=1))
        log_probs = self.output_log_probs(hidden[:, ids.shape[1] - 1 : -1])
        return log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    def window_log_probs(self, ids: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
        """``[B, T]``: the log-probability of each trained token of a :meth:`window_batch` given the
        tokens before it, all computed in one causal pass (0 where not trained). Right padding: a
        real token never sees a padded one, so the pass may treat every position as real."""
        hidden = self.states(ids, torch.ones_like(ids))
        log_probs = torch.zeros(ids.shape, device=ids.device)
        predictors = hidden[:, :-1][trained[:, 1:]]  # the position before each trained token
        targets = ids[:, 1:][trained[:, 1:]]
        log_probs[:, 1:][trained[:, 1:]] = self.output_log_probs(predictors).gather(-1, targets[:, None]).squeeze(-1)
        return log_probs

    def window_loss(self, ids: torch.Tensor, trained: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over the trained tokens of a :meth:`window_batch`."""
        return -self.window_log_probs(ids, trained)[trained].mean()
