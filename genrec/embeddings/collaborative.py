"""Collaborative item embeddings for datasets without item text.

Built from the *training* part of each sequence only (no validation or test item is seen): items
that occur within ``window`` positions of each other co-occur; the symmetric co-occurrence counts
become positive pointwise mutual information (PPMI), and a truncated SVD gives ``U * sqrt(S)``.
Items never seen in training get the zero vector (they are reported as cold).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, svds

from genrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def cooccurrence(train_sequences: list[np.ndarray], n_items: int, window: int) -> sp.csr_matrix:
    """Symmetric counts of item pairs at most ``window`` positions apart in a training sequence."""
    flat = np.concatenate(train_sequences)
    owner = np.repeat(np.arange(len(train_sequences)), [len(s) for s in train_sequences])
    rows, cols = [], []
    for distance in range(1, window + 1):
        same_user = owner[distance:] == owner[:-distance]
        rows.append(flat[:-distance][same_user])
        cols.append(flat[distance:][same_user])
    r, c = np.concatenate(rows), np.concatenate(cols)
    counts = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(n_items, n_items)).tocsr()
    counts = counts + counts.T
    counts.setdiag(0)
    counts.eliminate_zeros()
    return counts


def ppmi(counts: sp.csr_matrix) -> sp.csr_matrix:
    total = counts.sum()
    marginal = np.asarray(counts.sum(axis=1)).ravel()
    coo = counts.tocoo()
    values = np.log(coo.data * total / (marginal[coo.row] * marginal[coo.col]))
    keep = values > 0
    return sp.csr_matrix((values[keep], (coo.row[keep], coo.col[keep])), shape=counts.shape)


def cf_embeddings(train_sequences: list[np.ndarray], n_items: int, dim: int, window: int, seed: int) -> np.ndarray:
    if dim >= n_items:
        raise ConfigError(f"cf_emb_dim={dim} must be smaller than the number of items ({n_items})")
    matrix = ppmi(cooccurrence(train_sequences, n_items, window))
    cold = int((np.diff(matrix.indptr) == 0).sum())
    if cold == n_items:
        longest = max((len(s) for s in train_sequences), default=0)
        raise DataError(
            f"collaborative embeddings need items that co-occur in training sequences, and none do (the longest "
            f"training sequence has {longest} item(s); a user needs at least 4 interactions to give one pair); "
            "use text embeddings (--item_emb=text) if the items have text"
        )
    if cold:
        log.warning(
            "collaborative embeddings: %d of %d items have no training co-occurrence (zero vectors)", cold, n_items
        )
    v0 = np.random.default_rng(seed).standard_normal(n_items)
    try:
        u, s, _ = svds(matrix.astype(np.float64), k=dim, v0=v0)
    except (ArpackError, ArpackNoConvergence) as exc:
        raise DataError(
            f"collaborative embeddings: the SVD of the co-occurrence matrix failed ({exc}); {n_items - cold} of "
            f"{n_items} items co-occur in training: lower cf_emb_dim (now {dim})"
        ) from None
    order = np.argsort(-s)
    u, s = u[:, order], s[order]
    u *= np.sign(u[np.abs(u).argmax(axis=0), np.arange(dim)])  # fix SVD sign ambiguity
    return (u * np.sqrt(s)).astype(np.float32)
