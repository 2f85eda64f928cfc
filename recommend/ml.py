"""Recommendation models behind one small interface: ``fit`` / ``score`` / ``save`` / ``load``.

Plain NumPy/SciPy (ALS through the ``implicit`` library), no ORM. Every model scores *histories*
given at call time (item indices with their recency steps), so a customer's newest events change
the next answer without a retrain, and the evaluator and the API use the same code.

- ``popularity``: distinct customers per item.
- ``item_knn``: cosine similarity of item columns of the customer x item matrix, top neighbours kept.
- ``als``: implicit's ALS; a history's user factors are solved at call time (one exact ALS user step).
- ``ease``: the closed-form linear item model of Steck (2019).
- ``content``: cosine between item text embeddings (from the shared backbone) and the history's mean.
- ``hybrid`` (the project's model): a blend, tuned on a dev split, of EASE fed a recency-weighted
  history, a sequential item-to-next-item transition model (what was consumed right after the
  customer's latest items, like SASRec's next-item objective but closed form), text-embedding
  similarity to the latest items (cold items and cold customers), and recent popularity; optionally
  item-kNN and a SASRec-style transformer (``recommend/sequential.py``) as further components.
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)


@dataclass
class History:
    """A customer's items, newest last, with recency steps (0 = the newest moment; one step per distinct time)."""

    items: np.ndarray
    steps: np.ndarray
    times: np.ndarray | None = None  # absolute seconds, when known

    @classmethod
    def from_events(cls, items: Sequence[int], times: Sequence[float]) -> History:
        """Build from item indices and their times (any order); events at one time share a step."""
        if len(items) == 0:
            return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
        times_arr = np.asarray(times, dtype=np.float64)
        order = np.argsort(times_arr, kind="stable")
        items_arr = np.asarray(items, dtype=np.int64)[order]
        times_arr = times_arr[order]
        distinct = np.unique(times_arr)
        steps = len(distinct) - 1 - np.searchsorted(distinct, times_arr)
        return cls(items_arr, steps.astype(np.int64), times_arr)

    def weights(self, tau: float | None) -> np.ndarray:
        """Return one weight per event: exp(-step / tau), or 1 when ``tau`` is None."""
        if tau is None or tau <= 0:
            return np.ones(len(self.items), dtype=np.float32)
        return np.exp(-self.steps / tau).astype(np.float32)


@dataclass
class TrainSet:
    """What models are fitted on: item keys, each customer's History, and extra baskets (anonymous)."""

    items: list[str]
    histories: list[History]
    extra_baskets: list[np.ndarray] = field(default_factory=list)
    item_vectors: np.ndarray | None = None  # (n_items, dim) unit vectors from the backbone, or None

    @property
    def n_items(self) -> int:
        return len(self.items)

    def user_item_matrix(self, decay_days: float | None = None) -> sp.csr_matrix:
        """Return the customer x item matrix (one row per history): 1, or exp(-age / decay_days) with
        age measured back from the newest event of the train set (a repeated item keeps its newest)."""
        rows = np.concatenate([np.full(len(h.items), u, dtype=np.int64) for u, h in enumerate(self.histories)] or [[]])
        cols = np.concatenate([h.items for h in self.histories] or [[]]).astype(np.int64)
        if decay_days:
            times = np.concatenate([h.times for h in self.histories] or [[]])
            vals = np.exp(-(times.max() - times) / (decay_days * 86400.0)).astype(np.float32)
            order = np.argsort(vals, kind="stable")
            dense = np.zeros((len(self.histories), self.n_items), dtype=np.float32)
            dense[rows[order], cols[order]] = vals[order]
            return sp.csr_matrix(dense)
        matrix = sp.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(self.histories), self.n_items)
        )
        matrix.data[:] = 1.0  # duplicates summed: back to binary
        return matrix

    def basket_matrix(self) -> sp.csr_matrix:
        """Return the binary basket x item matrix: each history's items per step, plus the anonymous baskets."""
        rows, cols, n = [], [], 0
        for h in self.histories:
            if len(h.items) == 0:
                continue
            _, basket = np.unique(h.steps, return_inverse=True)
            rows.append(basket + n)
            cols.append(h.items)
            n += int(basket.max()) + 1
        for b in self.extra_baskets:
            rows.append(np.full(len(b), n))
            cols.append(b)
            n += 1
        r = np.concatenate(rows or [np.zeros(0, dtype=np.int64)])
        c = np.concatenate(cols or [np.zeros(0, dtype=np.int64)])
        matrix = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n, self.n_items))
        matrix.data[:] = 1.0
        return matrix

    def item_counts(self) -> np.ndarray:
        """Return distinct customers per item."""
        return np.asarray(self.user_item_matrix().sum(axis=0)).ravel().astype(np.float32)


def history_matrix(histories: Sequence[History], n_items: int, tau: float | None = None) -> sp.csr_matrix:
    """Return (len(histories), n_items) with each history's (recency-weighted) items; repeats keep their max weight."""
    rows, cols, vals = [], [], []
    for u, h in enumerate(histories):
        if len(h.items):
            rows.append(np.full(len(h.items), u))
            cols.append(h.items)
            vals.append(h.weights(tau))
    if not rows:
        return sp.csr_matrix((len(histories), n_items), dtype=np.float32)
    coo = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(histories), n_items)
    )
    # max per (row, col): sort by value so the last write wins in a dense scatter
    out = np.zeros((len(histories), n_items), dtype=np.float32)
    order = np.argsort(coo.data, kind="stable")
    out[coo.row[order], coo.col[order]] = coo.data[order]
    return sp.csr_matrix(out)


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


def top_k_sparse(dense: np.ndarray, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row of a dense matrix, as CSR."""
    n, m = dense.shape
    k = min(k, m)
    if k <= 0:
        return sp.csr_matrix((n, m), dtype=np.float32)
    idx = np.argpartition(-dense, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(dense, idx, axis=1)
    rows = np.repeat(np.arange(n), k)
    matrix = sp.csr_matrix((vals.ravel().astype(np.float32), (rows, idx.ravel())), shape=(n, m))
    matrix.eliminate_zeros()
    return matrix


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
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        co = (x.T @ x).toarray().astype(np.float32)
        np.fill_diagonal(co, 0.0)
        inv = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        co *= inv[:, None]
        co *= inv[None, :]
        self.similarity = top_k_sparse(co, self.neighbours)
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
    """EASE: B = argmin ||X - XB||² + l2 ||B||², diag(B) = 0, in closed form (Steck 2019)."""

    kind = "ease"

    def __init__(self, l2: float = 500.0, tau: float | None = None):
        self.l2 = l2
        self.tau = tau  # recency weighting of the input history (None: binary, as in the paper)

    def fit(self, train: TrainSet, matrix: sp.csr_matrix | None = None) -> EASEModel:
        x = train.user_item_matrix() if matrix is None else matrix
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        self.weights = b.astype(np.float32)
        self.n_items = train.n_items
        return self

    def score(self, histories: Sequence[History]) -> np.ndarray:
        h = history_matrix(histories, self.n_items, self.tau)
        return np.asarray(h @ self.weights, dtype=np.float32)

    def save(self, folder: Path) -> None:
        _save_arrays(folder, self.kind, {"l2": self.l2, "tau": self.tau}, {"weights": self.weights})

    @classmethod
    def load(cls, folder: Path) -> EASEModel:
        config, arrays = _load_arrays(folder)
        model = cls(config["l2"], config["tau"])
        model.weights = arrays["weights"]
        model.n_items = model.weights.shape[0]
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
    """Cosine between item text embeddings and the (recency-weighted) mean of the history's embeddings."""

    kind = "content"

    def __init__(self, tau: float | None = None):
        self.tau = tau

    def fit(self, train: TrainSet) -> ContentModel:
        if train.item_vectors is None:
            raise ValueError("the content model needs item_vectors")
        self.vectors = np.asarray(train.item_vectors, dtype=np.float32)
        self.n_items = train.n_items
        return self

    def profiles(self, histories: Sequence[History]) -> np.ndarray:
        """Return one unit vector per history (zeros for an empty one)."""
        h = history_matrix(histories, self.n_items, self.tau)
        prof = np.asarray(h @ self.vectors, dtype=np.float32)
        norms = np.linalg.norm(prof, axis=1, keepdims=True)
        return prof / np.where(norms > 0, norms, 1.0)

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return self.profiles(histories) @ self.vectors.T

    def save(self, folder: Path) -> None:
        _save_arrays(folder, self.kind, {"tau": self.tau}, {"vectors": self.vectors})

    @classmethod
    def load(cls, folder: Path) -> ContentModel:
        config, arrays = _load_arrays(folder)
        model = cls(config["tau"])
        model.vectors = arrays["vectors"]
        model.n_items = len(model.vectors)
        return model


def transition_matrix(train: TrainSet, window: int, basket_weight: float) -> sp.csr_matrix:
    """Return item -> next items: ``1/d`` for an item ``d`` steps after another (d <= window) in a history,
    ``basket_weight`` both ways for items at the same step (one basket) and in anonymous baskets; rows L1-normalised."""
    rows, cols, vals = [], [], []
    for h in train.histories:
        if len(h.items) < 2:
            continue
        order = np.argsort(-h.steps, kind="stable")  # oldest first
        items, steps = h.items[order], h.steps[order]
        n = len(items)
        for offset in range(1, n):
            a, b = items[:-offset], items[offset:]
            dist = steps[:-offset] - steps[offset:]  # >= 0 since oldest first
            keep = dist <= window
            if not keep.any():
                if (steps[:-offset] - steps[offset:]).min() > window:
                    break
                continue
            a, b, dist = a[keep], b[keep], dist[keep]
            same = dist == 0
            w = np.where(same, basket_weight, 1.0 / np.maximum(dist, 1)).astype(np.float32)
            rows.append(a)
            cols.append(b)
            vals.append(w)
            if same.any():
                rows.append(b[same])
                cols.append(a[same])
                vals.append(w[same])
    for basket in train.extra_baskets:
        if len(basket) < 2 or basket_weight <= 0:
            continue
        a, b = np.meshgrid(basket, basket, indexing="ij")
        off = a != b
        rows.append(a[off])
        cols.append(b[off])
        vals.append(np.full(off.sum(), basket_weight, dtype=np.float32))
    n_items = train.n_items
    if not rows:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items)
    )
    matrix.setdiag(0.0)
    matrix.eliminate_zeros()
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    inv = np.where(sums > 0, 1.0 / np.maximum(sums, 1e-12), 0.0)
    return (sp.diags(inv.astype(np.float32)) @ matrix).tocsr().astype(np.float32)


def recent_popularity(train: TrainSet, days: float) -> np.ndarray:
    """Distinct customers per item with an event in the last ``days`` before the newest event (all time if 0)."""
    times = [h.times for h in train.histories if h.times is not None and len(h.times)]
    if not days or not times:
        return train.item_counts()
    since = max(float(t.max()) for t in times) - days * 86400.0
    counts = np.zeros(train.n_items, dtype=np.float32)
    for h in train.histories:
        if h.times is not None and len(h.items):
            counts[np.unique(h.items[h.times >= since])] += 1
    return counts


@dataclass
class HybridConfig:
    """Hyper-parameters of the project's model (defaults tuned on dev splits; see recommend/evaluation.py)."""

    l2: float = 500.0  # EASE regularisation
    ease_tau: float | None = None  # recency weighting of EASE's input (steps; None: binary)
    ease_floor: float = 0.2  # weight kept by old items: floor + (1 - floor) * exp(-step / tau)
    window: int = 3  # transition window (steps); 0 turns the transition component off
    basket_weight: float = 0.5
    trans_tau: float = 1.0  # recency weighting of the transition input
    content_tau: float = 3.0
    w_ease: float = 1.0
    w_trans: float = 0.5
    w_content: float = 0.1
    w_pop: float = 0.1
    pop_days: float = 30.0  # "recent popularity" window, days before the newest training event (0: all time)
    decay_days: float | None = None  # age weighting of EASE's training rows (None: none)
    basket_l2: float = 200.0  # EASE on baskets (rows = baskets) for the "basket" component
    basket_tau: float = 1.0
    w_basket: float = 0.0
    neighbours: int = 0  # keep only this many EASE weights per item when saving for serving (0: all)
    knn: int = 0  # item-kNN neighbours for the "knn" component (0: off)
    w_knn: float = 0.0
    seq: bool = False  # fit the SASRec-style transformer (recommend/sequential.py) for the "seq" component
    w_seq: float = 0.0
    seq_epochs: int = 30
    seq_seconds: float = 150.0  # training time cap of the transformer
    seq_negatives: int = 0  # 0: full softmax
    seq_dim: int = 64


class HybridModel(Recommender):
    """The project's model: recency-weighted EASE + sequential transitions + text similarity + recent popularity."""

    kind = "hybrid"

    def __init__(self, config: HybridConfig | None = None):
        self.config = config or HybridConfig()

    def fit(self, train: TrainSet, recent_counts: np.ndarray | None = None) -> HybridModel:
        cfg = self.config
        self.n_items = train.n_items
        self.ease = EASEModel(cfg.l2).fit(train, train.user_item_matrix(cfg.decay_days)).weights
        self.basket_ease = EASEModel(cfg.basket_l2).fit(train, train.basket_matrix()).weights if cfg.w_basket else None
        self.transitions = (
            transition_matrix(train, cfg.window, cfg.basket_weight)
            if cfg.window > 0
            else sp.csr_matrix((train.n_items, train.n_items), dtype=np.float32)
        )
        self.vectors = None if train.item_vectors is None else np.asarray(train.item_vectors, dtype=np.float32)
        self.all_time = np.log1p(train.item_counts()).astype(np.float32)
        if recent_counts is None:
            recent_counts = recent_popularity(train, cfg.pop_days)
        self.popularity = np.log1p(np.asarray(recent_counts, dtype=np.float32))
        self.knn = ItemKNNModel(cfg.knn).fit(train).similarity if cfg.knn else None
        self.sequential = None
        if cfg.seq:
            from recommend.sequential import SASRecConfig, SASRecModel

            seq_cfg = SASRecConfig(
                dim=cfg.seq_dim, epochs=cfg.seq_epochs, max_seconds=cfg.seq_seconds, negatives=cfg.seq_negatives
            )
            self.sequential = SASRecModel(seq_cfg).fit(train)
        return self

    def components(self, histories: Sequence[History]) -> dict[str, np.ndarray]:
        """Return each component's standardised scores (for tuning the blend)."""
        cfg = self.config
        n = len(histories)
        out: dict[str, np.ndarray] = {}
        tau = cfg.ease_tau
        weighted = [
            History(h.items, h.steps) if tau is None else _FloorHistory(h.items, h.steps, cfg.ease_floor)
            for h in histories
        ]
        h_ease = history_matrix(weighted, self.n_items, tau)
        out["ease"] = standardise(np.asarray(h_ease @ self.ease, dtype=np.float32))
        if self.transitions.nnz:
            h_trans = history_matrix(histories, self.n_items, cfg.trans_tau)
            out["trans"] = standardise(np.asarray((h_trans @ self.transitions).todense(), dtype=np.float32))
        if self.vectors is not None:
            h_content = history_matrix(histories, self.n_items, cfg.content_tau)
            prof = np.asarray(h_content @ self.vectors, dtype=np.float32)
            prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
            out["content"] = standardise(prof @ self.vectors.T)
        out["pop"] = standardise(np.tile(self.popularity, (n, 1)))
        if self.basket_ease is not None:
            h_basket = history_matrix(histories, self.n_items, cfg.basket_tau)
            out["basket"] = standardise(np.asarray(h_basket @ self.basket_ease, dtype=np.float32))
        if self.knn is not None:
            out["knn"] = standardise(np.asarray((history_matrix(histories, self.n_items) @ self.knn).todense()))
        if self.sequential is not None:
            out["seq"] = standardise(self.sequential.score(histories))
        return out

    def blend(self, parts: dict[str, np.ndarray], weights: dict[str, float] | None = None) -> np.ndarray:
        """Return the weighted sum of standardised components."""
        cfg = self.config
        weights = weights or {
            "ease": cfg.w_ease,
            "trans": cfg.w_trans,
            "content": cfg.w_content,
            "pop": cfg.w_pop,
            "basket": cfg.w_basket,
            "knn": cfg.w_knn,
            "seq": cfg.w_seq,
        }
        total = None
        for name, part in parts.items():
            w = weights.get(name, 0.0)
            if w:
                total = part * w if total is None else total + part * w
        return total if total is not None else np.zeros_like(next(iter(parts.values())))

    def score(self, histories: Sequence[History]) -> np.ndarray:
        return self.blend(self.components(histories)).astype(np.float32)

    def save(self, folder: Path) -> None:
        ease = self.ease
        if self.config.neighbours:
            ease = top_k_sparse(ease.T, self.config.neighbours).T.toarray()
        arrays = {
            "ease": ease,
            "popularity": self.popularity,
            "all_time": self.all_time,
            **_sparse_arrays("trans", self.transitions),
        }
        if self.vectors is not None:
            arrays["vectors"] = self.vectors
        if self.basket_ease is not None:
            arrays["basket_ease"] = self.basket_ease
        if self.knn is not None:
            arrays.update(_sparse_arrays("knn", self.knn))
        _save_arrays(folder, self.kind, {"config": asdict(self.config)}, arrays)
        if self.sequential is not None:
            self.sequential.save(folder / "sequential")

    @classmethod
    def load(cls, folder: Path) -> HybridModel:
        config, arrays = _load_arrays(folder)
        model = cls(HybridConfig(**config["config"]))
        model.ease = arrays["ease"]
        model.popularity = arrays["popularity"]
        model.all_time = arrays["all_time"]
        model.transitions = _sparse_from("trans", arrays)
        model.vectors = arrays.get("vectors")
        model.basket_ease = arrays.get("basket_ease")
        model.knn = _sparse_from("knn", arrays) if "knn_shape" in arrays else None
        model.sequential = None
        if (folder / "sequential" / "config.json").exists():
            from recommend.sequential import SASRecModel

            model.sequential = SASRecModel.load(folder / "sequential")
        model.n_items = len(model.popularity)
        return model


class _FloorHistory(History):
    """A History whose recency weights never fall below ``floor``."""

    def __init__(self, items: np.ndarray, steps: np.ndarray, floor: float):
        super().__init__(items, steps, None)
        self.floor = floor

    def weights(self, tau: float | None) -> np.ndarray:
        base = super().weights(tau)
        return (self.floor + (1.0 - self.floor) * base).astype(np.float32)


MODELS: dict[str, type[Recommender]] = {
    m.kind: m for m in (PopularityModel, ItemKNNModel, EASEModel, ALSModel, ContentModel, HybridModel)
}


def load_model(folder: Path) -> Recommender:
    """Load any model written by ``save`` (its kind is in ``config.json``)."""
    import recommend.sequential  # noqa: F401  (registers "sasrec")

    kind = json.loads((Path(folder) / "config.json").read_text())["kind"]
    return MODELS[kind].load(Path(folder))


# --- ranking metrics ------------------------------------------------------------------------


@dataclass
class RankingMetrics:
    """Accumulates HR@k, NDCG@k, MRR, recall@k and catalogue coverage over customers."""

    k: int = 10
    n_items: int = 0
    hits: list[float] = field(default_factory=list)
    ndcg: list[float] = field(default_factory=list)
    rr: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    shown: set[int] = field(default_factory=set)

    def add(self, scores: np.ndarray, targets: set[int], exclude: np.ndarray) -> None:
        """Rank every item by ``scores`` (stable: ties by index), drop ``exclude``, score the ``targets``."""
        s = scores.astype(np.float64, copy=True)
        s[exclude] = -np.inf
        order = np.argsort(-s, kind="stable")
        valid = len(s) - len(np.unique(exclude))
        top = order[: self.k]
        self.shown.update(int(i) for i in top)
        ranks = np.empty(len(s), dtype=np.int64)
        ranks[order] = np.arange(1, len(s) + 1)
        target_ranks = np.sort(ranks[list(targets)])
        target_ranks = target_ranks[target_ranks <= valid]
        in_top = target_ranks[target_ranks <= self.k]
        ideal = sum(1.0 / np.log2(r + 1) for r in range(1, min(len(targets), self.k) + 1))
        self.hits.append(float(len(in_top) > 0))
        self.ndcg.append(float(sum(1.0 / np.log2(r + 1) for r in in_top) / ideal))
        self.rr.append(float(1.0 / target_ranks[0]) if len(target_ranks) else 0.0)
        self.recall.append(len(in_top) / len(targets))

    def result(self) -> dict[str, float]:
        """Return the averages (rounded) and the count."""
        n = max(1, len(self.hits))
        k = self.k
        return {
            f"hr@{k}": round(sum(self.hits) / n, 4),
            f"ndcg@{k}": round(sum(self.ndcg) / n, 4),
            "mrr": round(sum(self.rr) / n, 4),
            f"recall@{k}": round(sum(self.recall) / n, 4),
            "coverage": round(len(self.shown) / max(1, self.n_items), 4),
            "n": len(self.hits),
        }


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
    return TrainSet(train.items, kept, train.extra_baskets, train.item_vectors), histories, targets


class RankedHybridModel(Recommender):
    """Candidates from the hybrid blend, re-ranked by a LightGBM LambdaRank model over per-candidate features
    (each component's score, popularity all-time and recent, item age, the blend rank, history length).

    The ranker is trained on leave-last-out splits of the train set itself: ``rounds`` of them, each
    holding out one more step back in time (more training groups), and ``bags`` LightGBM rankers on
    different row samples are averaged (per-row standardised scores).
    """

    kind = "ranked_hybrid"
    COMPONENTS = ("ease", "trans", "content", "pop", "basket", "knn", "seq")
    FEATURES = (*COMPONENTS, "blend", "rank", "log_pop", "age", "idle", "hist_len")

    def __init__(
        self,
        config: HybridConfig | None = None,
        candidates: int = 100,
        ranker_users: int = 2000,
        rounds: int = 1,
        bags: int = 1,
    ):
        self.config = config or HybridConfig()
        self.candidates = candidates
        self.ranker_users = ranker_users
        self.rounds = rounds  # leave-last-out rounds that make the ranker's training groups
        self.bags = bags

    @staticmethod
    def item_times(train: TrainSet) -> tuple[np.ndarray, np.ndarray, float]:
        """Return each item's first and last interaction time, and the newest time of the train set."""
        first = np.full(train.n_items, np.inf)
        last = np.full(train.n_items, -np.inf)
        for h in train.histories:
            if h.times is not None and len(h.items):
                np.minimum.at(first, h.items, h.times)
                np.maximum.at(last, h.items, h.times)
        newest = float(last[np.isfinite(last)].max()) if np.isfinite(last).any() else 0.0
        first[~np.isfinite(first)] = newest
        last[~np.isfinite(last)] = newest - 365 * 86400.0
        return first, last, newest

    def _features(
        self, hybrid: HybridModel, histories: Sequence[History], times
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (candidate indices (B, N), features (B*N, F), blend scores (B, n_items))."""
        first, last, newest = times
        parts = hybrid.components(histories)
        blend = hybrid.blend(parts)
        masked = blend.copy()
        for b, h in enumerate(histories):
            masked[b, h.items] = -np.inf
        n = min(self.candidates, hybrid.n_items)
        cand = np.argpartition(-masked, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(masked, cand, axis=1), axis=1)
        cand = np.take_along_axis(cand, order, axis=1)
        cols = []
        for name in self.COMPONENTS:
            part = parts.get(name)
            cols.append(np.take_along_axis(part, cand, axis=1) if part is not None else np.zeros(cand.shape))
        cols.append(np.take_along_axis(blend, cand, axis=1))
        cols.append(np.tile(np.arange(n, dtype=np.float32), (len(histories), 1)))
        cols.append(hybrid.all_time[cand])
        cols.append((newest - first[cand]) / 86400.0)
        cols.append((newest - last[cand]) / 86400.0)
        lengths = np.asarray([len(h.items) for h in histories], dtype=np.float32)
        cols.append(np.tile(np.log1p(lengths)[:, None], (1, n)))
        features = np.stack([c.astype(np.float32) for c in cols], axis=2).reshape(-1, len(cols))
        return cand, features, blend

    def fit(self, train: TrainSet, seed: int = 7) -> RankedHybridModel:
        import lightgbm as lgb

        xs, ys = [], []
        current = train
        for round_ in range(self.rounds):  # round r holds out another step, further back in time
            inner, histories, targets = leave_last_out(current, self.ranker_users, seed + round_)
            inner_hybrid = HybridModel(self.config).fit(inner)
            times = self.item_times(inner)
            for start in range(0, len(histories), 256):
                batch = histories[start : start + 256]
                cand, feats, _ = self._features(inner_hybrid, batch, times)
                labels = np.asarray(
                    [[c in targets[start + b] for c in row] for b, row in enumerate(cand)], dtype=np.float32
                )
                xs.append(feats)
                ys.append(labels.reshape(-1))
            current = inner
        x, y = np.concatenate(xs), np.concatenate(ys)
        n = min(self.candidates, train.n_items)
        groups = np.full(len(y) // n, n)
        # ``bags`` rankers on different row samples, averaged: the leave-last-out groups are few
        # (about 1,000 customers on the Online Retail dev split), so one ranker is noisy.
        self.boosters = [
            lgb.LGBMRanker(
                n_estimators=200,
                learning_rate=0.05,
                num_leaves=31,
                min_child_samples=50,
                subsample=0.8,
                subsample_freq=1,
                colsample_bytree=0.8,
                n_jobs=1,
                random_state=seed + bag,
                verbose=-1,
            )
            .fit(x, y, group=groups)
            .booster_
            for bag in range(self.bags)
        ]
        self.hybrid = HybridModel(self.config).fit(train)
        self.times = self.item_times(train)
        self.n_items = train.n_items
        return self

    def score(self, histories: Sequence[History]) -> np.ndarray:
        cand, feats, blend = self._features(self.hybrid, histories, self.times)
        pred = np.zeros(cand.shape, dtype=np.float64)
        for booster in self.boosters:
            pred += standardise(booster.predict(feats, num_threads=1).reshape(cand.shape))
        # Candidates above everything else, in the ranker's order; the rest keep the blend's order.
        out = blend - blend.max(axis=1, keepdims=True) - 1.0
        pred = pred - pred.min(axis=1, keepdims=True)
        np.put_along_axis(out, cand, pred.astype(np.float32), axis=1)
        return out.astype(np.float32)

    def save(self, folder: Path) -> None:
        self.hybrid.save(folder / "hybrid")
        folder.mkdir(parents=True, exist_ok=True)
        for bag, booster in enumerate(self.boosters):
            (folder / ("ranker.txt" if bag == 0 else f"ranker-{bag}.txt")).write_text(booster.model_to_string())
        first, last, newest = self.times
        _save_arrays(
            folder,
            self.kind,
            {"candidates": self.candidates, "ranker_users": self.ranker_users, "rounds": self.rounds, "newest": newest},
            {"first": first, "last": last},
        )

    @classmethod
    def load(cls, folder: Path) -> RankedHybridModel:
        import lightgbm as lgb

        config, arrays = _load_arrays(folder)
        model = cls(
            candidates=config["candidates"], ranker_users=config["ranker_users"], rounds=config.get("rounds", 1)
        )
        model.hybrid = HybridModel.load(folder / "hybrid")
        model.config = model.hybrid.config
        files = sorted(folder.glob("ranker-*.txt"), key=lambda f: int(f.stem.split("-")[1]))
        model.boosters = [lgb.Booster(model_str=f.read_text()) for f in [folder / "ranker.txt", *files]]
        model.bags = len(model.boosters)
        model.times = (arrays["first"], arrays["last"], float(config["newest"]))
        model.n_items = model.hybrid.n_items
        return model


MODELS[RankedHybridModel.kind] = RankedHybridModel
