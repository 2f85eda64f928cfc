"""The interface every recommender follows, and :func:`rank_scores`, what customers are served."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from recommend.ml.data import History, TrainSet


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
