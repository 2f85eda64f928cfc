"""Where apps plug into the backbone without the backbone importing them.

Apps register in their ``AppConfig.ready``:
- training tasks: a factory that builds a :class:`~backbone.multitask.TrainingTask` from the database;
- embedding indexes: what must be re-embedded when a version is activated;
- evaluators: ``manage.py evaluate TASK``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

TASK_FACTORIES: dict[str, Callable[[dict[str, Any]], Any]] = {}
EVALUATORS: dict[str, Callable[..., dict[str, Any]]] = {}
EMBEDDING_INDEXES: dict[str, EmbeddingIndex] = {}


class EmbeddingIndex(Protocol):
    """Rows that carry embeddings of a model version (e.g. product embeddings in pgvector)."""

    name: str

    def pending_ids(self, version_id: int, limit: int) -> list[int]:
        """Return ids of rows not yet embedded with ``version_id``."""

    def count(self, version_id: int) -> tuple[int, int]:
        """Return (embedded, total) for ``version_id``."""

    def texts(self, ids: list[int]) -> dict[int, str]:
        """Return the text to embed for each id."""

    def store(self, version_id: int, vectors: dict[int, Any]) -> None:
        """Write embeddings (idempotent: upsert)."""

    def prune(self, keep_version_ids: list[int]) -> None:
        """Delete embeddings of every version not in ``keep_version_ids``."""


@dataclass(frozen=True)
class Evaluator:
    task: str
    datasets: tuple[str, ...]
    run: Callable[..., dict[str, Any]]


def register_task(name: str, factory: Callable[[dict[str, Any]], Any]) -> None:
    """Register a training task factory: ``factory(parameters) -> TrainingTask``."""
    TASK_FACTORIES[name] = factory


def register_index(index: EmbeddingIndex) -> None:
    """Register an embedding index to fill on activation."""
    EMBEDDING_INDEXES[index.name] = index


def register_evaluator(task: str, datasets: tuple[str, ...], run: Callable[..., dict[str, Any]]) -> None:
    """Register ``manage.py evaluate TASK``: ``run(dataset=, train_dir=, test_dir=, options=)``."""
    EVALUATORS[task] = Evaluator(task, datasets, run)
