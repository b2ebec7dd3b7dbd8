"""Decoding: semantic IDs constrained to real items by a tensorized trie, batched beam search, and
aggregation of an item's beams (for latent-token models)."""

from genrec.decoding.beam_search import EMPTY, INVALID, aggregate_beams, beam_search
from genrec.decoding.trie import SIDTrie

__all__ = ["EMPTY", "INVALID", "SIDTrie", "aggregate_beams", "beam_search"]
