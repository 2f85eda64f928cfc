"""Customers' taste profiles: the mean creative embedding of what each clicked, and of what they did not."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from ads.data import CtrData


def normalised(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-9)).astype(np.float32)


def taste_means(groups: np.ndarray, n_groups: int, ids: np.ndarray, matrix: np.ndarray, mask: np.ndarray):
    """Per group: the sum of ``matrix[ids]`` over the rows in ``mask`` ((n_groups, dim), one sparse product)."""
    counts = sparse.csr_matrix(
        (np.ones(int(mask.sum()), dtype=np.float32), (groups[mask], ids[mask])), shape=(n_groups, len(matrix))
    )
    return np.asarray(counts @ matrix, dtype=np.float32)


class TasteProfiles:
    """Each customer's taste: the unit-length mean creative embedding of what they clicked, and of what they
    did not. ``liked`` and ``disliked`` have one row per key plus a last zero row for unknown customers."""

    def __init__(self, keys: list[str], liked: np.ndarray, disliked: np.ndarray):
        self.keys = list(keys)
        self.position = {k: i for i, k in enumerate(self.keys)}
        self.liked, self.disliked = liked, disliked

    @classmethod
    def build(cls, keys: np.ndarray, ids: np.ndarray, matrix: np.ndarray, labels: np.ndarray) -> TasteProfiles:
        """From each row's customer key ("" = anonymous, left out), creative index into ``matrix`` and click."""
        known = sorted({k for k in keys if k})
        position = {k: i for i, k in enumerate(known)}
        groups = np.fromiter((position.get(k, len(known)) for k in keys), dtype=np.int64, count=len(keys))
        clicked = np.asarray(labels) > 0.5
        liked = taste_means(groups, len(known) + 1, ids, matrix, clicked)
        disliked = taste_means(groups, len(known) + 1, ids, matrix, ~clicked)
        liked[-1] = disliked[-1] = 0.0  # the anonymous rows' sums: unknown customers read zeros
        return cls(known, normalised(liked), normalised(disliked))

    def index(self, keys: Sequence[str]) -> np.ndarray:
        """Row of each key in ``liked`` / ``disliked`` (the zero row for an unknown one)."""
        return np.fromiter((self.position.get(k, len(self.keys)) for k in keys), dtype=np.int64, count=len(keys))


def out_of_fold_tastes(data: CtrData, field_name: str, folds: int, seed: int) -> tuple[np.ndarray, ...]:
    """Taste profiles of training rows, each from the customer's rows in the other ``folds`` - 1 folds.

    Returns (liked matrix, disliked matrix, row -> matrix row). A row's profile never depends on its own
    label, not even through which rows share it (as it would with leave-one-out, which a network that
    also sees the customer id can memorise). One matrix row per (customer, fold) present.
    """
    keys, ids, matrix = data.keys(field_name), data.text_ids[0], data.text_vectors[0]
    fold = np.random.default_rng(seed).integers(0, folds, len(keys))
    known = sorted({k for k in keys if k})
    position = {k: i for i, k in enumerate(known)}
    customer = np.fromiter((position.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
    pairs, pair = np.unique(np.where(customer >= 0, customer * folds + fold, -1), return_inverse=True)
    clicked = np.asarray(data.labels) > 0.5
    out = []
    for mask in (clicked, ~clicked):
        whole = taste_means(np.maximum(customer, 0), len(known) + 1, ids, matrix, mask & (customer >= 0))
        own = taste_means(pair, len(pairs), ids, matrix, mask)
        others = whole[np.maximum(pairs, 0) // folds] - own  # the customer's rows outside the pair's fold
        others[pairs < 0] = 0.0  # anonymous rows
        out.append(normalised(others))
    return out[0], out[1], pair.astype(np.int64)
