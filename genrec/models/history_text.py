"""Items' text inside a causal backbone's sequences (``history_text``): the prompts of the LLM-based
generative recommenders (MiniOneRec, LC-Rec), where the language model reads the history as words as
well as semantic IDs.

Layout: every item of a sequence is its ID tokens followed by the first ``history_text_tokens``
tokens of its text (the configured fields' values, joined by ``"; "``). Text *after* the ID, so that
one training window stays leak-free: the ID of item ``j`` is predicted from the IDs and texts of the
items before it and never sees its own title, and the history at inference reads exactly as the
windows did in training. Text tokens are context only: no loss is put on them.

Token ids: a sequence holds genrec's tokens (``0 .. vocab.size - 1``) and, above them, text tokens.
For a pretrained model the text token ``t`` of its tokenizer is ``vocab.size + t`` (the model reads it
as its own ``t``); for a random-initialised model only the tokens the catalogue's texts use are
kept, numbered from ``vocab.size`` in order of first use (a 30,000-token vocabulary would otherwise
outweigh a small model's parameters many times over), and a new item's tokens outside that set are
dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genrec.embeddings.text import resolve_model
from genrec.errors import ConfigError


def item_sentence(text: dict[str, str], fields: list[str]) -> str:
    """The values of ``fields`` in ``text``, whitespace-normalised and joined by ``"; "``."""
    return "; ".join(" ".join(text[field].split()) for field in fields if text.get(field, "").strip())


def text_tokenizer(backbone_path: str | None, sent_emb_model: str, needs_own: bool):
    """The tokenizer of the backbone's folder when it has one; else the text encoder's (for a
    random-initialised model any tokenizer works). ``needs_own``: a pretrained model's text must be
    cut into its own tokens, so its folder must hold its tokenizer."""
    from transformers import AutoTokenizer

    if backbone_path is not None:
        folder = Path(backbone_path)
        if any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
        if needs_own:
            raise ConfigError(
                f"history_text with the pretrained weights of backbone_path={folder} needs that model's tokenizer "
                "files there (tokenizer.json or tokenizer_config.json)"
            )
    return AutoTokenizer.from_pretrained(resolve_model(sent_emb_model), local_files_only=True)


class ItemText:
    """Each item's text tokens ``[n_items, max_tokens]`` (right-padded; ``lengths`` real ones) in a
    sequence's token ids, numbered from ``first`` (see the module docstring)."""

    def __init__(self, tokenizer, fields: list[str], max_tokens: int, first: int, compact: bool):
        self.tokenizer, self.fields, self.max_tokens, self.first = tokenizer, fields, max_tokens, first
        # compact: tokenizer id -> index among the kept tokens; None: the tokenizer's whole vocabulary
        self.kept: dict[int, int] | None = {} if compact else None
        self.padded = torch.zeros(0, max_tokens, dtype=torch.long)
        self.lengths = torch.zeros(0, dtype=torch.long)

    @property
    def size(self) -> int:
        """How many text token ids lie above ``first``: the kept tokens, or the tokenizer's vocabulary."""
        return len(self.kept) if self.kept is not None else len(self.tokenizer)

    def add(self, texts: list[dict[str, str]], grow: bool = True) -> None:
        """Append items' texts (``grow``: a compact vocabulary keeps the new tokens it meets, as when the
        catalogue is read; a trained model's cannot grow, so unknown tokens are dropped)."""
        if not texts:
            return
        encoded = self.tokenizer(
            [item_sentence(text, self.fields) for text in texts], add_special_tokens=False, truncation=False
        )["input_ids"]
        rows = torch.zeros(len(texts), self.max_tokens, dtype=torch.long)
        lengths = torch.zeros(len(texts), dtype=torch.long)
        for row, ids in enumerate(encoded):
            if self.kept is not None:
                if grow:
                    for token in ids[: self.max_tokens]:
                        self.kept.setdefault(token, len(self.kept))
                ids = [self.kept[token] for token in ids if token in self.kept]
            ids = ids[: self.max_tokens]
            rows[row, : len(ids)] = torch.tensor(ids, dtype=torch.long) + self.first
            lengths[row] = len(ids)
        self.padded, self.lengths = torch.cat([self.padded, rows]), torch.cat([self.lengths, lengths])

    def interleaved(self, items: torch.Tensor, item_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, owners)`` of items ``[n]`` whose ID tokens are ``item_tokens`` ``[n, L]``: each item's
        ID then its text, flat; ``owners`` the item's position ``0 .. n - 1`` for ID tokens, ``-1`` for text."""
        n, length = item_tokens.shape
        tokens = torch.cat([item_tokens, self.padded[items]], dim=1)  # [n, L + max_tokens]
        real = torch.cat(
            [torch.ones(n, length, dtype=torch.bool), torch.arange(self.max_tokens) < self.lengths[items, None]], dim=1
        )
        owners = torch.cat([torch.arange(n)[:, None].expand(n, length), torch.full((n, self.max_tokens), -1)], dim=1)
        return tokens[real], owners[real]
