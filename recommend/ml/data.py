"""What models are fitted on and score: a customer's :class:`History`, the :class:`TrainSet` and
the sparse matrices built from them, and the leave-last-out splits the ranker learns from."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

MAX_HISTORY = 1000  # newest events (whole steps) a recommendation reads; the API reads one more
DAY = 86400.0


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


def item_components(x: sp.spmatrix) -> np.ndarray:
    """Label each item (column of ``x``) with its connected component: items linked through shared rows."""
    x = sp.csr_matrix(x)
    n_rows = x.shape[0]
    graph = sp.bmat([[None, x], [x.T, None]], format="csr")
    _, labels = connected_components(graph, directed=False)
    return labels[n_rows:]


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
