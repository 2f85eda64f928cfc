"""The served two-stage recommender: hybrid candidates re-ranked by LightGBM LambdaRank
(:class:`RankedHybridModel`), its one training recipe :func:`fit_recommender`, and :func:`load_model`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from recommend.ml.arrays import load_arrays, save_arrays, sparse_arrays, sparse_from
from recommend.ml.base import Recommender
from recommend.ml.baselines import ALSModel, ContentModel, EASEModel, ItemKNNModel, PopularityModel
from recommend.ml.data import DAY, History, TrainSet, item_times, leave_last_out, standardise
from recommend.ml.hybrid import HybridConfig, HybridModel, bought_together

Progress = Callable[[float, str], None]


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
        arrays = {"first": first, "last": last, "newest": newest, **sparse_arrays("together", self.together)}
        save_arrays(folder, self.kind, {"config": asdict(self.config), "bags": len(self.boosters)}, arrays)

    @classmethod
    def load(cls, folder: Path) -> RankedHybridModel:
        import lightgbm as lgb

        config, arrays = load_arrays(folder)
        model = cls(HybridConfig(**config["config"]))
        model.hybrid = HybridModel.load(folder / "hybrid")
        model.boosters = [
            lgb.Booster(model_str=(folder / f"ranker-{bag}.txt").read_text()) for bag in range(config["bags"])
        ]
        model.times = (arrays["first"], arrays["last"], arrays["newest"])
        model.together = sparse_from("together", arrays)
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
