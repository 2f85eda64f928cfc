"""The hybrid blend: EASE over a binary and a recency-weighted history, next-item transitions,
EASE over baskets, text-embedding similarity and recent popularity; and bought-together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommend.ml.arrays import load_arrays, save_arrays, sparse_arrays, sparse_from, top_k_rows
from recommend.ml.base import Recommender
from recommend.ml.data import DAY, History, TrainSet, history_matrix, standardise
from recommend.ml.ease import BlockWeights, ease_weights

PAIR_CHUNK = 2_000_000  # item pairs summed into a sparse matrix at a time


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
    # weights kept per item row in the EASE matrices (largest by magnitude; 0: all): a dense
    # 9,700-item MovieLens block took 376 MB in every web worker. Dev NDCG@10 (split of the train
    # side, 2026-12-01): MovieLens 0.0845 all / 0.0789 keep 1000 / 0.0825 keep 300 (n=610, within
    # noise); Online Retail 0.1299 all / 0.1302 keep 300 (n=1,342)
    ease_keep: int = 300
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
        self.ease = ease_weights(train.user_item_matrix(), cfg.l2, keep=cfg.ease_keep)
        self.basket_ease = (
            ease_weights(train.basket_matrix(), cfg.basket_l2, keep=cfg.ease_keep) if cfg.w_basket else None
        )
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
            **sparse_arrays("trans", self.transitions),
        }
        if self.vectors is not None:
            arrays["vectors"] = self.vectors
        if self.basket_ease is not None:
            arrays.update(self.basket_ease.arrays("basket"))
        save_arrays(folder, self.kind, {"config": asdict(self.config)}, arrays)

    @classmethod
    def load(cls, folder: Path) -> HybridModel:
        config, arrays = load_arrays(folder)
        model = cls(HybridConfig(**config["config"]))
        model.ease = BlockWeights.from_arrays("ease", arrays)
        model.popularity = arrays["popularity"]
        model.all_time = arrays["all_time"]
        model.transitions = sparse_from("trans", arrays)
        model.vectors = arrays.get("vectors")
        model.basket_ease = BlockWeights.from_arrays("basket", arrays) if "basket_n_items" in arrays else None
        model.n_items = len(model.popularity)
        return model
