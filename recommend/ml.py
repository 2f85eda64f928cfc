"""Recommendation models behind one small interface: ``fit`` / ``score`` / ``save`` / ``load``.

Plain NumPy/SciPy (ALS through the ``implicit`` library, the re-ranker through LightGBM), no ORM.
Every model scores *histories* given at call time (item indices with their recency steps), so a
customer's newest events change the next answer without a retrain, and ``evaluate recommend`` and
the API score through the same :func:`rank_scores`.

Items are a compact index of the items that have interactions: products nobody has touched are
not in it (the services reach them through their text embeddings). Item x item weights are dense
blocks over items that share customers or baskets (:class:`BlockWeights`): two datasets imported
into one platform never share a customer, so their items form separate blocks, and 68,000
products of which 13,600 have events cost a 9,700- and a 3,900-item block, not 68,000².

- ``popularity``, ``item_knn``, ``als``, ``ease``, ``content``: the baselines of ``evaluate recommend``.
- ``hybrid``: a blend of EASE over a binary and a recency-weighted history, next-item
  transitions, EASE over baskets, text-embedding similarity and recent popularity.
- ``ranked_hybrid`` (served and measured): the hybrid's candidates re-ranked by bagged LightGBM
  LambdaRank rankers; :func:`fit_recommender` is its one training recipe.
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

logger = logging.getLogger(__name__)

MAX_HISTORY = 1000  # newest events (whole steps) a recommendation reads; the API reads one more
PACK_ITEMS = 2048  # small item components are packed together into blocks of about this size
MAX_BLOCK_ITEMS = 12000  # largest dense block (576 MB in float32); rarer items of a larger one get no EASE weights
PAIR_CHUNK = 2_000_000  # item pairs summed into a sparse matrix at a time
DAY = 86400.0
Progress = Callable[[float, str], None]


@dataclass
class History:
    """A customer's items, oldest first, with recency steps (0 = the newest moment; one step per distinct time)."""

    items: np.ndarray
    steps: np.ndarray
    times: np.ndarray | None = None  # absolute seconds, when known

    @classmethod
    def from_events(cls, items: Sequence[int], times: Sequence[float]) -> History:
        """Build from item indices and their times, in any order: events are ordered by (time, item)
        and events at one time share a step, so the same events always give the same history."""
        if len(items) == 0:
            return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
        items_arr = np.asarray(items, dtype=np.int64)
        times_arr = np.asarray(times, dtype=np.float64)
        order = np.lexsort((items_arr, times_arr))
        items_arr, times_arr = items_arr[order], times_arr[order]
        distinct = np.unique(times_arr)
        steps = len(distinct) - 1 - np.searchsorted(distinct, times_arr)
        return cls(items_arr, steps.astype(np.int64), times_arr)

    def newest(self, n: int = MAX_HISTORY) -> History:
        """Return the newest whole steps that hold at most ``n`` events (at least the newest step).

        Whole steps make the cut the same whether the caller read every event or only the newest ``n + 1``.
        """
        if len(self.items) <= n:
            return self
        whole = int(np.searchsorted(np.cumsum(np.bincount(self.steps)), n, side="right"))
        keep = self.steps < max(1, whole)
        return History(self.items[keep], self.steps[keep], None if self.times is None else self.times[keep])

    def weights(self, tau: float | None, floor: float = 0.0) -> np.ndarray:
        """Return one weight per event: floor + (1 - floor) * exp(-step / tau), or 1 when ``tau`` is None."""
        if tau is None or tau <= 0:
            return np.ones(len(self.items), dtype=np.float32)
        return (floor + (1.0 - floor) * np.exp(-self.steps / tau)).astype(np.float32)


def binary_rows(rows: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Return the binary len(rows) x n_items matrix with row r's items set."""
    r = np.repeat(np.arange(len(rows), dtype=np.int64), [len(x) for x in rows])
    c = np.concatenate([np.asarray(x, dtype=np.int64) for x in rows]) if rows else np.zeros(0, dtype=np.int64)
    matrix = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(rows), n_items))
    matrix.data[:] = 1.0  # duplicates were summed: back to binary
    return matrix


@dataclass
class TrainSet:
    """What models are fitted on: item keys (the compact index), each customer's History, and
    anonymous baskets (they teach co-occurrence only)."""

    items: list[str]
    histories: list[History]
    extra_baskets: list[np.ndarray] = field(default_factory=list)
    item_vectors: np.ndarray | None = None  # (n_items, dim) unit vectors from the backbone, or None
    customers: list[str] = field(default_factory=list)  # one key per history, when known

    @property
    def n_items(self) -> int:
        return len(self.items)

    def user_item_matrix(self) -> sp.csr_matrix:
        """Return the binary customer x item matrix (one row per history)."""
        return binary_rows([h.items for h in self.histories], self.n_items)

    def basket_matrix(self) -> sp.csr_matrix:
        """Return the binary basket x item matrix: each history's items per step, then the anonymous baskets."""
        rows, cols, n = [], [], 0
        for h in self.histories:
            if len(h.items):
                _, basket = np.unique(h.steps, return_inverse=True)
                rows.append(basket + n)
                cols.append(h.items)
                n += int(basket.max()) + 1
        baskets = binary_rows(self.extra_baskets, self.n_items)
        r = np.concatenate(rows or [np.zeros(0, dtype=np.int64)])
        c = np.concatenate(cols or [np.zeros(0, dtype=np.int64)])
        steps = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, self.n_items))
        steps.data[:] = 1.0
        return sp.vstack([steps, baskets]).tocsr()

    def item_counts(self) -> np.ndarray:
        """Return distinct customers per item."""
        return np.asarray(self.user_item_matrix().sum(axis=0)).ravel().astype(np.float32)

    def newest_times(self) -> np.ndarray:
        """Per item, the newest event time of its part of the catalogue (items linked through shared
        customers or baskets): "recent" is measured on each part's own clock, so two datasets
        imported into one platform each keep theirs."""
        last = np.full(self.n_items, -np.inf)
        timed = [h for h in self.histories if h.times is not None and len(h.items)]
        if timed:
            np.maximum.at(last, np.concatenate([h.items for h in timed]), np.concatenate([h.times for h in timed]))
        labels = item_components(sp.vstack([self.user_item_matrix(), binary_rows(self.extra_baskets, self.n_items)]))
        newest = np.full(labels.max() + 1 if len(labels) else 0, -np.inf)
        np.maximum.at(newest, labels, last)
        fallback = float(last[np.isfinite(last)].max()) if np.isfinite(last).any() else 0.0
        out = newest[labels]
        return np.where(np.isfinite(out), out, fallback)


def build_train_set(
    events: Iterable[tuple[str, str, float]], baskets: Iterable[Iterable[str]] = ()
) -> tuple[TrainSet, dict[str, int]]:
    """Index (customer key, item key, unix time) events and anonymous baskets of item keys.

    Items are the keys that occur (sorted), customers sorted by key, baskets sorted: the platform
    (product SKUs, customer ids) and ``evaluate`` (dataset ids) build the same set from the same
    data in any order. Returns the train set (no item vectors) and item key -> index.
    """
    by_customer: dict[str, list[tuple[str, float]]] = {}
    for customer, item, when in events:
        by_customer.setdefault(customer, []).append((item, when))
    baskets = [set(b) for b in baskets]
    keys = sorted({i for rows in by_customer.values() for i, _ in rows} | {i for b in baskets for i in b})
    index = {k: i for i, k in enumerate(keys)}
    customers = sorted(by_customer)
    histories = [
        History.from_events([index[i] for i, _ in by_customer[c]], [t for _, t in by_customer[c]]) for c in customers
    ]
    extra = sorted((np.asarray(sorted(index[i] for i in b), dtype=np.int64) for b in baskets if len(b) > 1), key=list)
    return TrainSet(items=keys, histories=histories, extra_baskets=extra, customers=customers), index


def history_matrix(
    histories: Sequence[History], n_items: int, tau: float | None = None, floor: float = 0.0
) -> sp.csr_matrix:
    """Return (len(histories), n_items) with each history's weighted items (:meth:`History.weights`);
    a repeated item keeps its largest weight."""
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), [len(h.items) for h in histories])
    cols = np.concatenate([h.items for h in histories] or [np.zeros(0, dtype=np.int64)])
    vals = np.concatenate([h.weights(tau, floor) for h in histories] or [np.zeros(0, dtype=np.float32)])
    order = np.lexsort((-vals, cols, rows))  # per cell, the largest weight first
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    return sp.csr_matrix((vals[first], (rows[first], cols[first])), shape=(len(histories), n_items), dtype=np.float32)


def standardise(scores: np.ndarray) -> np.ndarray:
    """Per row: (x - mean) / std, so that blended components share a scale."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


def _save_arrays(folder: Path, kind: str, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "arrays.npz", **arrays)
    (folder / "config.json").write_text(json.dumps({"kind": kind, **config}, indent=2))


def _load_arrays(folder: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    config = json.loads((folder / "config.json").read_text())
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return config, arrays


def _sparse_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    matrix = matrix.tocsr()
    return {
        f"{prefix}_data": matrix.data.astype(np.float32),
        f"{prefix}_indices": matrix.indices.astype(np.int32),
        f"{prefix}_indptr": matrix.indptr.astype(np.int64),
        f"{prefix}_shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def _sparse_from(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    shape = tuple(int(x) for x in arrays[f"{prefix}_shape"])
    return sp.csr_matrix((arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]), shape)


def top_k_rows(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row of a sparse matrix (ties: the lower column)."""
    matrix = matrix.tocsr()
    matrix.sort_indices()
    rows, cols, vals = [], [], []
    for r in range(matrix.shape[0]):
        lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
        top = np.argsort(-matrix.data[lo:hi], kind="stable")[:k]
        rows.append(np.full(len(top), r, dtype=np.int64))
        cols.append(matrix.indices[lo:hi][top])
        vals.append(matrix.data[lo:hi][top])
    if not rows:
        return sp.csr_matrix(matrix.shape, dtype=np.float32)
    out = sp.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))), shape=matrix.shape
    )
    out.eliminate_zeros()
    return out


# --- block-dense item x item weights ----------------------------------------------------------


def item_components(x: sp.spmatrix) -> np.ndarray:
    """Label each item (column of ``x``) with its connected component: items linked through shared rows."""
    x = sp.csr_matrix(x)
    n_rows = x.shape[0]
    graph = sp.bmat([[None, x], [x.T, None]], format="csr")
    _, labels = connected_components(graph, directed=False)
    return labels[n_rows:]


def item_blocks(x: sp.csr_matrix, max_block: int = MAX_BLOCK_ITEMS) -> list[np.ndarray]:
    """Split the items of ``x`` that occur with another item into blocks that no row of ``x`` crosses.

    Small components are packed together (a block may hold several); a component over ``max_block``
    keeps its ``max_block`` most frequent items. Items alone in their component are left out.
    """
    labels = item_components(x)
    counts = np.asarray((x > 0).sum(axis=0)).ravel()
    order = np.argsort(labels, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(labels[order])) + 1) if len(order) else []
    groups = [g for g in groups if len(g) > 1]
    blocks, current, size = [], [], 0
    for group in sorted(groups, key=len):
        if len(group) > max_block:
            logger.warning("an item component of %d items keeps its %d most frequent in EASE", len(group), max_block)
            group = group[np.argsort(-counts[group], kind="stable")[:max_block]]
        if current and size + len(group) > PACK_ITEMS:
            blocks.append(np.sort(np.concatenate(current)))
            current, size = [], 0
        current.append(group)
        size += len(group)
    if current:
        blocks.append(np.sort(np.concatenate(current)))
    return blocks


class BlockWeights:
    """An item x item matrix that is zero between blocks of items: dense ``(items, weights)`` blocks."""

    def __init__(self, n_items: int, blocks: list[tuple[np.ndarray, np.ndarray]]):
        self.n_items = n_items
        self.blocks = blocks
        self.block_of = np.full(n_items, -1, dtype=np.int64)
        self.offset = np.zeros(n_items, dtype=np.int64)
        for b, (items, _) in enumerate(blocks):
            self.block_of[items] = b
            self.offset[items] = np.arange(len(items))

    def left_multiply(self, h: sp.csr_matrix) -> np.ndarray:
        """Return the dense ``h @ W`` for a sparse (rows, n_items) ``h``."""
        out = np.zeros((h.shape[0], self.n_items), dtype=np.float32)
        h = h.tocsc()
        for items, weights in self.blocks:
            part = h[:, items]
            if part.nnz:
                out[:, items] = part @ weights
        return out

    def row(self, i: int) -> np.ndarray:
        """Return row ``i`` as a dense vector."""
        out = np.zeros(self.n_items, dtype=np.float32)
        if self.block_of[i] >= 0:
            items, weights = self.blocks[self.block_of[i]]
            out[items] = weights[self.offset[i]]
        return out

    def take(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Return the dense ``W[rows][:, cols]``."""
        out = np.zeros((len(rows), len(cols)), dtype=np.float32)
        for b in np.unique(self.block_of[rows]):
            if b < 0:
                continue
            r, c = np.flatnonzero(self.block_of[rows] == b), np.flatnonzero(self.block_of[cols] == b)
            out[np.ix_(r, c)] = self.blocks[b][1][np.ix_(self.offset[rows[r]], self.offset[cols[c]])]
        return out

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Return the blocks as named arrays (for ``arrays.npz``)."""
        out = {f"{prefix}_n_items": np.asarray(self.n_items, dtype=np.int64)}
        for b, (items, weights) in enumerate(self.blocks):
            out[f"{prefix}_items_{b}"], out[f"{prefix}_weights_{b}"] = items, weights
        return out

    @classmethod
    def from_arrays(cls, prefix: str, arrays: dict[str, np.ndarray]) -> BlockWeights:
        """Read what :meth:`arrays` wrote."""
        n = sum(1 for k in arrays if k.startswith(f"{prefix}_items_"))
        blocks = [(arrays[f"{prefix}_items_{b}"], arrays[f"{prefix}_weights_{b}"]) for b in range(n)]
        return cls(int(arrays[f"{prefix}_n_items"]), blocks)


def ease_weights(x: sp.csr_matrix, l2: float, max_block: int = MAX_BLOCK_ITEMS) -> BlockWeights:
    """EASE's B = argmin ||X - XB||² + l2 ||B||², diag(B) = 0 (Steck 2019) for the binary rows of ``x``.

    One float32 inversion per block of :func:`item_blocks`; exact, since the Gram matrix is zero
    between blocks (float32 agrees with float64 to 1e-5 on Online Retail, at 2.5x the speed).
    """
    blocks = []
    for items in item_blocks(x, max_block):
        part = x[:, items]
        gram = (part.T @ part).toarray().astype(np.float32)
        gram[np.diag_indices_from(gram)] += l2
        p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
        p /= -np.diag(p).copy()[None, :]
        np.fill_diagonal(p, 0.0)
        blocks.append((items, p.astype(np.float32, copy=False)))
    return BlockWeights(x.shape[1], blocks)


# --- the models -------------------------------------------------------------------------------


class Recommender(abc.ABC):
    """The interface every model follows (like implicit's ``RecommenderBase``)."""

    kind: ClassVar[str] = ""
    n_items: int = 0

    @abc.abstractmethod
    def fit(self, train: TrainSet) -> Recommender:
        """Learn from ``train``; return self."""

    @abc.abstractmethod
    def score(self, histories: Sequence[History]) -> np.ndarray:
        """Return (len(histories), n_items) float32 scores; higher is better; history items are not masked."""

    @abc.abstractmethod
    def save(self, folder: Path) -> None:
        """Write ``config.json`` and ``arrays.npz`` (no pickle) to ``folder``."""

    @classmethod
    @abc.abstractmethod
    def load(cls, folder: Path) -> Recommender:
        """Read a model written by :meth:`save`."""


def rank_scores(model: Recommender, histories: Sequence[History], exclude: Sequence[np.ndarray]) -> np.ndarray:
    """What customers are served, by the API and ``evaluate recommend`` alike: ``model``'s scores of
    every item for each history, with that history's ``exclude`` items (what it already has) at -inf."""
    scores = model.score(histories)
    for row, items in enumerate(exclude):
        scores[row, np.asarray(items, dtype=np.int64)] = -np.inf
    return scores


class PopularityModel(Recommender):
    """Items ranked by how many customers have them."""

    kind = "popularity"

    def fit(self, train: TrainSet) -> PopularityModel:
        self.counts = train.item_counts()
        self.n_items = train.n_items
        return self

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return np.tile(self.counts, (len(histories), 1))

    def save(self, folder: Path) -> None:
        _save_arrays(folder, self.kind, {}, {"counts": self.counts})

    @classmethod
    def load(cls, folder: Path) -> PopularityModel:
        _, arrays = _load_arrays(folder)
        model = cls()
        model.counts = arrays["counts"]
        model.n_items = len(model.counts)
        return model


class ItemKNNModel(Recommender):
    """Cosine similarity on co-occurrence (item columns of the customer x item matrix), top neighbours kept."""

    kind = "item_knn"

    def __init__(self, neighbours: int = 200):
        self.neighbours = neighbours

    def fit(self, train: TrainSet) -> ItemKNNModel:
        x = train.user_item_matrix()
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
        inv = sp.diags(np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32))
        co = (x.T @ x).tocsr()
        co.setdiag(0.0)
        self.similarity = top_k_rows(inv @ co @ inv, self.neighbours)
        self.n_items = train.n_items
        return self

    def score(self, histories: Sequence[History]) -> np.ndarray:
        h = history_matrix(histories, self.n_items)
        return np.asarray((h @ self.similarity).todense(), dtype=np.float32)

    def save(self, folder: Path) -> None:
        _save_arrays(folder, self.kind, {"neighbours": self.neighbours}, _sparse_arrays("sim", self.similarity))

    @classmethod
    def load(cls, folder: Path) -> ItemKNNModel:
        config, arrays = _load_arrays(folder)
        model = cls(config["neighbours"])
        model.similarity = _sparse_from("sim", arrays)
        model.n_items = model.similarity.shape[0]
        return model


class EASEModel(Recommender):
    """EASE (Steck 2019) over the binary customer x item matrix: :func:`ease_weights`."""

    kind = "ease"

    def __init__(self, l2: float = 500.0):
        self.l2 = l2

    def fit(self, train: TrainSet) -> EASEModel:
        self.weights = ease_weights(train.user_item_matrix(), self.l2)
        self.n_items = train.n_items
        return self

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return self.weights.left_multiply(history_matrix(histories, self.n_items))

    def save(self, folder: Path) -> None:
        _save_arrays(folder, self.kind, {"l2": self.l2}, self.weights.arrays("ease"))

    @classmethod
    def load(cls, folder: Path) -> EASEModel:
        config, arrays = _load_arrays(folder)
        model = cls(config["l2"])
        model.weights = BlockWeights.from_arrays("ease", arrays)
        model.n_items = model.weights.n_items
        return model


class ALSModel(Recommender):
    """Implicit-feedback ALS from the ``implicit`` library; user factors are solved per history at call time."""

    kind = "als"

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 10.0, iterations: int = 15):
        self.factors, self.regularization, self.alpha, self.iterations = factors, regularization, alpha, iterations

    def fit(self, train: TrainSet, seed: int = 7) -> ALSModel:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        x = train.user_item_matrix()
        with threadpool_limits(1, "blas"):  # implicit's advice: BLAS threads fight its own
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=seed,
                num_threads=1,
            )
            model.fit(x, show_progress=False)
        self.item_factors = np.asarray(model.item_factors, dtype=np.float32)
        self.n_items = train.n_items
        return self

    def score(self, histories: Sequence[History]) -> np.ndarray:
        y = self.item_factors.astype(np.float64)
        yty = y.T @ y
        eye = self.regularization * np.eye(y.shape[1])
        out = np.zeros((len(histories), self.n_items), dtype=np.float32)
        for u, h in enumerate(histories):
            items = np.unique(h.items)
            if len(items) == 0:
                continue
            yh = y[items]
            # confidence 1 + alpha on the customer's items, preference 1: one exact ALS user step
            user = np.linalg.solve(yty + self.alpha * yh.T @ yh + eye, (1 + self.alpha) * yh.sum(axis=0))
            out[u] = (y @ user).astype(np.float32)
        return out

    def save(self, folder: Path) -> None:
        config = {"factors": self.factors, "regularization": self.regularization, "alpha": self.alpha}
        _save_arrays(folder, self.kind, {**config, "iterations": self.iterations}, {"item_factors": self.item_factors})

    @classmethod
    def load(cls, folder: Path) -> ALSModel:
        config, arrays = _load_arrays(folder)
        model = cls(config["factors"], config["regularization"], config["alpha"], config["iterations"])
        model.item_factors = arrays["item_factors"]
        model.n_items = len(model.item_factors)
        return model


class ContentModel(Recommender):
    """Cosine between item text embeddings and the mean of the history's embeddings."""

    kind = "content"

    def fit(self, train: TrainSet) -> ContentModel:
        if train.item_vectors is None:
            raise ValueError("the content model needs item_vectors")
        self.vectors = np.asarray(train.item_vectors, dtype=np.float32)
        self.n_items = train.n_items
        return self

    def score(self, histories: Sequence[History]) -> np.ndarray:
        prof = np.asarray(history_matrix(histories, self.n_items) @ self.vectors, dtype=np.float32)
        prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
        return prof @ self.vectors.T

    def save(self, folder: Path) -> None:
        _save_arrays(folder, self.kind, {}, {"vectors": self.vectors})

    @classmethod
    def load(cls, folder: Path) -> ContentModel:
        _, arrays = _load_arrays(folder)
        model = cls()
        model.vectors = arrays["vectors"]
        model.n_items = len(model.vectors)
        return model


class PairSum:
    """Sums (item, item, weight) triples into an item x item CSR matrix a chunk at a time, so memory
    follows the size of the result, not the number of triples (tens of millions on Online Retail)."""

    def __init__(self, n_items: int):
        self.total = sp.csr_matrix((n_items, n_items), dtype=np.float32)
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pending = 0

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """Add ``vals`` at (``rows``, ``cols``); repeated cells sum."""
        self.parts.append((rows.astype(np.int32), cols.astype(np.int32), vals.astype(np.float32)))
        self.pending += len(rows)
        if self.pending >= PAIR_CHUNK:
            self.flush()

    def flush(self) -> None:
        """Fold the pending triples into the total."""
        if self.parts:
            r, c, v = (np.concatenate(x) for x in zip(*self.parts))
            self.total = (self.total + sp.csr_matrix((v, (r, c)), shape=self.total.shape)).tocsr()
            self.parts, self.pending = [], 0

    def result(self) -> sp.csr_matrix:
        """Return the summed matrix."""
        self.flush()
        return self.total


def transition_matrix(train: TrainSet, window: int, basket_weight: float) -> sp.csr_matrix:
    """Return item -> next items: ``1/d`` for an item ``d`` steps after another (d <= window) in a history,
    ``basket_weight`` both ways for items at the same step (one basket) and in anonymous baskets; rows L1-normalised."""
    pairs = PairSum(train.n_items)
    for h in train.histories:
        order = np.argsort(-h.steps, kind="stable")  # oldest first
        items, steps = h.items[order], h.steps[order]
        for offset in range(1, len(items)):
            dist = steps[:-offset] - steps[offset:]  # >= 0 since oldest first
            keep = dist <= window
            if not keep.any():
                if dist.min() > window:
                    break
                continue
            a, b, dist = items[:-offset][keep], items[offset:][keep], dist[keep]
            same = dist == 0
            w = np.where(same, basket_weight, 1.0 / np.maximum(dist, 1))
            pairs.add(np.concatenate([a, b[same]]), np.concatenate([b, a[same]]), np.concatenate([w, w[same]]))
    for basket in train.extra_baskets:
        if len(basket) >= 2 and basket_weight > 0:
            a, b = np.meshgrid(basket, basket, indexing="ij")
            off = a != b
            pairs.add(a[off], b[off], np.full(off.sum(), basket_weight))
    matrix = pairs.result()
    matrix.setdiag(0.0)
    matrix.eliminate_zeros()
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    inv = np.where(sums > 0, 1.0 / np.maximum(sums, 1e-12), 0.0)
    return (sp.diags(inv.astype(np.float32)) @ matrix).tocsr().astype(np.float32)


def bought_together(train: TrainSet, keep: int = 50) -> sp.csr_matrix:
    """Return item -> the ``keep`` items found in most baskets with it (a customer's step, or an
    anonymous basket or session), valued by that number of baskets."""
    baskets = train.basket_matrix()
    co = (baskets.T @ baskets).tocsr()
    co.setdiag(0.0)
    co.eliminate_zeros()
    return top_k_rows(co, keep)


def recent_popularity(train: TrainSet, days: float) -> np.ndarray:
    """Distinct customers per item with an event in the last ``days`` before the newest event of the
    item's part of the catalogue (:meth:`TrainSet.newest_times`); all time when ``days`` is 0."""
    if not days:
        return train.item_counts()
    since = train.newest_times() - days * DAY
    counts = np.zeros(train.n_items, dtype=np.float32)
    for h in train.histories:
        if h.times is not None and len(h.items):
            counts[np.unique(h.items[h.times >= since[h.items]])] += 1
    return counts


@dataclass
class HybridConfig:
    """The served recipe's settings; one default for every shop, MovieLens and Online Retail imported
    together included (picked on dev splits, see ``recommend/evaluation.py``). ``--set KEY=VALUE``
    (``manage.py train`` and ``evaluate``) overrides any of them."""

    l2: float = 500.0  # EASE regularisation
    ease_tau: float = 5.0  # recency weighting of the "ease_recent" input (steps)
    ease_floor: float = 0.2  # weight kept by old items there: floor + (1 - floor) * exp(-step / tau)
    window: int = 3  # transition window (steps); 0 turns the transition component off
    basket_weight: float = 0.5
    trans_tau: float = 1.0  # recency weighting of the transition input
    content_tau: float = 3.0
    w_ease: float = 0.5
    w_ease_recent: float = 0.5
    w_trans: float = 0.5
    w_content: float = 0.1
    w_pop: float = 0.2
    pop_days: float = 30.0  # "recent popularity": days before the newest event of the item's part (0: all time)
    basket_l2: float = 200.0  # EASE on baskets (rows = baskets) for the "basket" component
    basket_tau: float = 1.0
    w_basket: float = 0.3
    candidates: int = 100  # blend candidates the ranker re-ranks
    ranker_users: int = 4000  # leave-last-out customers per round that train the ranker
    rounds: int = 2  # leave-last-out rounds, each one step further back
    bags: int = 5  # rankers on different row samples, averaged

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any] | None) -> HybridConfig:
        """Return the defaults overridden by the known keys of ``parameters`` (others are ignored)."""
        values = {}
        for f in fields(cls):
            if f.name in (parameters or {}):
                value = parameters[f.name]
                values[f.name] = type(f.default)(value) if value is not None else None
        return cls(**values)


class HybridModel(Recommender):
    """A blend of standardised components: EASE (binary and recency-weighted history), transitions,
    text similarity, recent popularity and basket EASE."""

    kind = "hybrid"

    def __init__(self, config: HybridConfig | None = None):
        self.config = config or HybridConfig()

    def fit(self, train: TrainSet) -> HybridModel:
        cfg = self.config
        self.n_items = train.n_items
        self.ease = ease_weights(train.user_item_matrix(), cfg.l2)
        self.basket_ease = ease_weights(train.basket_matrix(), cfg.basket_l2) if cfg.w_basket else None
        self.transitions = (
            transition_matrix(train, cfg.window, cfg.basket_weight)
            if cfg.window > 0
            else sp.csr_matrix((train.n_items, train.n_items), dtype=np.float32)
        )
        self.vectors = None if train.item_vectors is None else np.asarray(train.item_vectors, dtype=np.float32)
        self.all_time = np.log1p(train.item_counts()).astype(np.float32)
        self.popularity = np.log1p(recent_popularity(train, cfg.pop_days)).astype(np.float32)
        return self

    def components(self, histories: Sequence[History]) -> dict[str, np.ndarray]:
        """Return each component's standardised scores of each history's newest ``MAX_HISTORY`` events."""
        cfg = self.config
        histories = [h.newest() for h in histories]
        out: dict[str, np.ndarray] = {}
        out["ease"] = standardise(self.ease.left_multiply(history_matrix(histories, self.n_items)))
        recent = history_matrix(histories, self.n_items, cfg.ease_tau, cfg.ease_floor)
        out["ease_recent"] = standardise(self.ease.left_multiply(recent))
        if self.transitions.nnz:
            h_trans = history_matrix(histories, self.n_items, cfg.trans_tau)
            out["trans"] = standardise(np.asarray((h_trans @ self.transitions).todense(), dtype=np.float32))
        if self.vectors is not None:
            h_content = history_matrix(histories, self.n_items, cfg.content_tau)
            prof = np.asarray(h_content @ self.vectors, dtype=np.float32)
            prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
            out["content"] = standardise(prof @ self.vectors.T)
        out["pop"] = standardise(np.tile(self.popularity, (len(histories), 1)))
        if self.basket_ease is not None:
            h_basket = history_matrix(histories, self.n_items, cfg.basket_tau)
            out["basket"] = standardise(self.basket_ease.left_multiply(h_basket))
        return out

    def blend(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        """Return the weighted sum (``w_<component>`` of the config) of standardised components."""
        total = np.zeros_like(next(iter(parts.values())))
        for name, part in parts.items():
            weight = getattr(self.config, f"w_{name}")
            if weight:
                total += weight * part
        return total

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return self.blend(self.components(histories)).astype(np.float32)

    def save(self, folder: Path) -> None:
        arrays = {
            **self.ease.arrays("ease"),
            "popularity": self.popularity,
            "all_time": self.all_time,
            **_sparse_arrays("trans", self.transitions),
        }
        if self.vectors is not None:
            arrays["vectors"] = self.vectors
        if self.basket_ease is not None:
            arrays.update(self.basket_ease.arrays("basket"))
        _save_arrays(folder, self.kind, {"config": asdict(self.config)}, arrays)

    @classmethod
    def load(cls, folder: Path) -> HybridModel:
        config, arrays = _load_arrays(folder)
        model = cls(HybridConfig(**config["config"]))
        model.ease = BlockWeights.from_arrays("ease", arrays)
        model.popularity = arrays["popularity"]
        model.all_time = arrays["all_time"]
        model.transitions = _sparse_from("trans", arrays)
        model.vectors = arrays.get("vectors")
        model.basket_ease = BlockWeights.from_arrays("basket", arrays) if "basket_n_items" in arrays else None
        model.n_items = len(model.popularity)
        return model


# --- two-stage: hybrid candidates, then a learned ranker ----------------------------------------


def leave_last_out(train: TrainSet, max_users: int, seed: int = 7) -> tuple[TrainSet, list[History], list[set[int]]]:
    """Hold out each sampled customer's newest step (their last item or basket) from ``train``.

    Returns (the train set without those steps, the shortened histories, their held-out items);
    the ranker learns from these, so it never sees the evaluation's own held-out data.
    """
    rng = np.random.default_rng(seed)
    eligible = [u for u, h in enumerate(train.histories) if len(h.items) and h.steps.max() >= 1]
    chosen = (
        set(rng.choice(eligible, size=min(max_users, len(eligible)), replace=False).tolist()) if eligible else set()
    )
    kept, histories, targets = [], [], []
    for u, h in enumerate(train.histories):
        if u not in chosen:
            kept.append(h)
            continue
        old = h.steps > 0
        cut = History(h.items[old], h.steps[old] - 1, None if h.times is None else h.times[old])
        kept.append(cut)
        target = set(h.items[~old].tolist()) - set(cut.items.tolist())
        if target:
            histories.append(cut)
            targets.append(target)
    inner = TrainSet(train.items, kept, train.extra_baskets, train.item_vectors, train.customers)
    return inner, histories, targets


def item_times(train: TrainSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each item's first and last interaction time and the newest time of its part of the catalogue."""
    newest = train.newest_times()
    first = np.full(train.n_items, np.inf)
    last = np.full(train.n_items, -np.inf)
    for h in train.histories:
        if h.times is not None and len(h.items):
            np.minimum.at(first, h.items, h.times)
            np.maximum.at(last, h.items, h.times)
    first = np.where(np.isfinite(first), first, newest)
    last = np.where(np.isfinite(last), last, newest - 365 * DAY)
    return first, last, newest


class RankedHybridModel(Recommender):
    """Candidates from the hybrid blend, re-ranked by LightGBM LambdaRank over per-candidate features
    (each component's score, the blend and its rank, all-time popularity, the item's age and idle
    days on its part's clock, the history's length and items per step).

    The rankers learn on leave-last-out splits of the train set itself: ``rounds`` of them, each
    holding out one more step back in time, and ``bags`` rankers on different row samples are
    averaged (per-row standardised scores). ``together`` (bought together) is served beside it.
    """

    kind = "ranked_hybrid"
    COMPONENTS = ("ease", "ease_recent", "trans", "content", "pop", "basket")
    FEATURES = (*COMPONENTS, "blend", "rank", "log_pop", "age", "idle", "hist_len", "step_items")

    def __init__(self, config: HybridConfig | None = None):
        self.config = config or HybridConfig()
        self.boosters: list[Any] = []

    def _features(
        self, hybrid: HybridModel, histories: Sequence[History], times
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (candidate indices (B, N), features (B*N, F), blend scores (B, n_items))."""
        first, last, newest = times
        histories = [h.newest() for h in histories]
        parts = hybrid.components(histories)
        blend = hybrid.blend(parts)
        masked = blend.copy()
        for b, h in enumerate(histories):
            masked[b, h.items] = -np.inf
        n = min(self.config.candidates, hybrid.n_items)
        cand = np.argpartition(-masked, n - 1, axis=1)[:, :n]
        cand = np.take_along_axis(cand, np.argsort(-np.take_along_axis(masked, cand, axis=1), axis=1), axis=1)
        cols = [
            np.take_along_axis(parts[name], cand, axis=1) if name in parts else np.zeros(cand.shape)
            for name in self.COMPONENTS
        ]
        cols.append(np.take_along_axis(blend, cand, axis=1))
        cols.append(np.tile(np.arange(n, dtype=np.float32), (len(histories), 1)))
        cols.append(hybrid.all_time[cand])
        cols.append((newest[cand] - first[cand]) / DAY)
        cols.append((newest[cand] - last[cand]) / DAY)
        lengths = np.asarray([len(h.items) for h in histories], dtype=np.float32)
        steps = np.asarray([h.steps.max() + 1 if len(h.items) else 1 for h in histories], dtype=np.float32)
        cols.append(np.tile(np.log1p(lengths)[:, None], (1, n)))
        cols.append(np.tile(np.log1p(lengths / steps)[:, None], (1, n)))
        features = np.stack([c.astype(np.float32) for c in cols], axis=2).reshape(-1, len(cols))
        return cand, features, blend

    def _ranker_rows(self, train: TrainSet, seed: int, progress: Progress) -> tuple[np.ndarray, np.ndarray]:
        """Features and labels (1: the held-out item) of every leave-last-out round's candidates."""
        xs, ys = [], []
        current = train
        rounds = self.config.rounds
        for round_ in range(rounds):  # round r holds out another step, further back in time
            progress(0.6 * round_ / rounds, f"ranker examples, leave-last-out round {round_ + 1}/{rounds}")
            inner, histories, targets = leave_last_out(current, self.config.ranker_users, seed + round_)
            if not histories:
                break
            inner_hybrid, times = HybridModel(self.config).fit(inner), item_times(inner)
            for start in range(0, len(histories), 256):
                cand, feats, _ = self._features(inner_hybrid, histories[start : start + 256], times)
                xs.append(feats)
                ys.append(np.asarray([[c in targets[start + b] for c in row] for b, row in enumerate(cand)]).ravel())
            del inner_hybrid  # one item x item model in memory at a time
            current = inner
        if not xs:
            return np.zeros((0, len(self.FEATURES)), dtype=np.float32), np.zeros(0, dtype=np.float32)
        return np.concatenate(xs), np.concatenate(ys).astype(np.float32)

    def fit(self, train: TrainSet, seed: int = 7, progress: Progress | None = None) -> RankedHybridModel:
        import lightgbm as lgb

        progress = progress or (lambda fraction, message: None)
        x, y = self._ranker_rows(train, seed, progress)
        n = min(self.config.candidates, train.n_items)
        groups = np.full(len(y) // max(n, 1), n)
        params = dict(n_estimators=200, learning_rate=0.05, num_leaves=31, min_child_samples=50, subsample=0.8)
        params.update(subsample_freq=1, colsample_bytree=0.8, n_jobs=1, verbose=-1)
        self.boosters = []
        for bag in range(self.config.bags if y.any() else 0):  # no held-out hit at all: the blend ranks alone
            progress(0.6 + 0.25 * bag / self.config.bags, f"ranker {bag + 1}/{self.config.bags}")
            ranker = lgb.LGBMRanker(**params, random_state=seed + bag).fit(x, y, group=groups)
            self.boosters.append(ranker.booster_)
        progress(0.85, "the served blend on every customer")
        self.hybrid = HybridModel(self.config).fit(train)
        self.times = item_times(train)
        self.together = bought_together(train)
        self.n_items = train.n_items
        return self

    def score(self, histories: Sequence[History]) -> np.ndarray:
        cand, feats, blend = self._features(self.hybrid, histories, self.times)
        if not self.boosters:
            return blend.astype(np.float32)
        pred = np.zeros(cand.shape, dtype=np.float64)
        for booster in self.boosters:
            pred += standardise(booster.predict(feats, num_threads=1).reshape(cand.shape))
        # Candidates above everything else, in the ranker's order; the rest keep the blend's order.
        out = blend - blend.max(axis=1, keepdims=True) - 1.0
        np.put_along_axis(out, cand, (pred - pred.min(axis=1, keepdims=True)).astype(np.float32), axis=1)
        return out.astype(np.float32)

    @property
    def popularity(self) -> np.ndarray:
        """Recent popularity (log customers): what a customer without history is shown."""
        return self.hybrid.popularity

    def save(self, folder: Path) -> None:
        self.hybrid.save(folder / "hybrid")
        for bag, booster in enumerate(self.boosters):
            (folder / f"ranker-{bag}.txt").write_text(booster.model_to_string())
        first, last, newest = self.times
        arrays = {"first": first, "last": last, "newest": newest, **_sparse_arrays("together", self.together)}
        _save_arrays(folder, self.kind, {"config": asdict(self.config), "bags": len(self.boosters)}, arrays)

    @classmethod
    def load(cls, folder: Path) -> RankedHybridModel:
        import lightgbm as lgb

        config, arrays = _load_arrays(folder)
        model = cls(HybridConfig(**config["config"]))
        model.hybrid = HybridModel.load(folder / "hybrid")
        model.boosters = [
            lgb.Booster(model_str=(folder / f"ranker-{bag}.txt").read_text()) for bag in range(config["bags"])
        ]
        model.times = (arrays["first"], arrays["last"], arrays["newest"])
        model.together = _sparse_from("together", arrays)
        model.n_items = model.hybrid.n_items
        return model


MODELS: dict[str, type[Recommender]] = {
    m.kind: m
    for m in (PopularityModel, ItemKNNModel, EASEModel, ALSModel, ContentModel, HybridModel, RankedHybridModel)
}


def load_model(folder: Path) -> Recommender:
    """Load any model written by ``save`` (its kind is in ``config.json``)."""
    kind = json.loads((Path(folder) / "config.json").read_text())["kind"]
    return MODELS[kind].load(Path(folder))


def fit_recommender(
    train: TrainSet, parameters: dict[str, Any] | None = None, progress: Progress | None = None
) -> RankedHybridModel:
    """The one recipe that ``manage.py train`` serves and ``evaluate recommend`` measures:
    a :class:`RankedHybridModel` with :class:`HybridConfig` defaults overridden by ``parameters``
    (``seed`` seeds the rankers); ``progress(fraction, message)`` hears how far it is."""
    parameters = parameters or {}
    config = HybridConfig.from_parameters(parameters)
    return RankedHybridModel(config).fit(train, seed=int(parameters.get("seed") or 7), progress=progress)
