"""The baselines of ``evaluate recommend``: popularity, item kNN, EASE, ALS and content similarity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recommend.ml.arrays import load_arrays, save_arrays, sparse_arrays, sparse_from, top_k_rows
from recommend.ml.base import Recommender
from recommend.ml.data import History, TrainSet, history_matrix
from recommend.ml.ease import BlockWeights, ease_weights


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
        save_arrays(folder, self.kind, {}, {"counts": self.counts})

    @classmethod
    def load(cls, folder: Path) -> PopularityModel:
        _, arrays = load_arrays(folder)
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
        save_arrays(folder, self.kind, {"neighbours": self.neighbours}, sparse_arrays("sim", self.similarity))

    @classmethod
    def load(cls, folder: Path) -> ItemKNNModel:
        config, arrays = load_arrays(folder)
        model = cls(config["neighbours"])
        model.similarity = sparse_from("sim", arrays)
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
        save_arrays(folder, self.kind, {"l2": self.l2}, self.weights.arrays("ease"))

    @classmethod
    def load(cls, folder: Path) -> EASEModel:
        config, arrays = load_arrays(folder)
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
        save_arrays(folder, self.kind, {**config, "iterations": self.iterations}, {"item_factors": self.item_factors})

    @classmethod
    def load(cls, folder: Path) -> ALSModel:
        config, arrays = load_arrays(folder)
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
        save_arrays(folder, self.kind, {}, {"vectors": self.vectors})

    @classmethod
    def load(cls, folder: Path) -> ContentModel:
        _, arrays = load_arrays(folder)
        model = cls()
        model.vectors = arrays["vectors"]
        model.n_items = len(model.vectors)
        return model
