"""Where apps plug into the backbone without the backbone importing them.

Apps register in their ``AppConfig.ready``:
- training tasks: a factory that builds a :class:`~backbone.multitask.TrainingTask` from the database;
- embedding indexes: what must be re-embedded when a version is activated;
- evaluators: ``manage.py evaluate TASK``;
- app trainers: what ``manage.py train APP`` trains for each app (:class:`AppTrainer`);
- splitters: ``manage.py split_dataset NAME`` (:class:`Splitter`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

TASK_FACTORIES: dict[str, Callable[[dict[str, Any]], Any]] = {}
EVALUATORS: dict[str, Callable[..., dict[str, Any]]] = {}
EMBEDDING_INDEXES: dict[str, EmbeddingIndex] = {}
APP_TRAINERS: dict[str, AppTrainer] = {}
SPLITTERS: dict[str, Splitter] = {}


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


@dataclass(frozen=True)
class Splitter:
    """How ``manage.py split_dataset NAME`` carves ``OUT/train`` and ``OUT/test`` out of a dataset folder.

    ``split(data_dir, out, test_fraction, seed)`` writes both sides (each laid out like the dataset
    folder) and returns a JSON-serialisable summary; it raises ``ValueError`` or
    ``catalog.importers.DatasetError`` on unusable input. ``rule``: one line for the command's help
    saying what is held out (and which of ``test_fraction``/``seed`` it ignores).
    """

    name: str
    split: Callable[[Path, Path, float, int], dict[str, Any]]
    rule: str


@dataclass(frozen=True)
class AppTrainer:
    """How ``manage.py train APP`` (and the admin's Retrain, and ``POST /api/v1/training-jobs``) trains one app.

    - ``tasks``: backbone task names this app adds to the one multi-task fine-tune (may be empty);
    - ``fine_tunes``: whether training this app needs a new backbone version (search, chatbot);
      apps without it (recommend, ads) train on the active backbone when named alone;
    - ``data()``: a one-line summary of what the database holds to train on, "" when nothing;
    - ``fit(version=, parameters=, job_id=, progress=)``: trains the app's own model on backbone
      ``version`` (its embeddings are complete; it is not necessarily active yet) and returns the
      row (a :class:`~backbone.models.TrainedModel`, state ready) or None when the backbone heads
      are all the app serves; raises on failure. ``progress(fraction, message)`` reports progress.
      The job activates every returned row together with the backbone version;
    - ``parameters``: the app's default job parameters (e.g. the intent recipe's epochs and rates);
      a job merges those of its apps in order, and what the caller passed overrides them;
    - ``validate(version=, row=)``: the score (higher is better) that what would serve with backbone
      ``version`` and app model ``row`` gets on the app's validation split, as ``(metric, value,
      n)``, or None without enough validation data; a scheduled run activates only if each app's new
      score is at least the serving one's (``backbone.gate``). None: the app is not judged;
    - ``model``: the class of the row the app serves (a TrainedModel), when it can A/B test a
      challenger row against the active one (``backbone.experiments``).
    """

    app: str
    tasks: tuple[str, ...]
    fine_tunes: bool
    data: Callable[[], str]
    fit: Callable[..., Any] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    validate: Callable[..., tuple[str, float, int] | None] | None = None
    model: type | None = None


def register_app(trainer: AppTrainer) -> None:
    """Register what ``manage.py train`` trains for one app."""
    APP_TRAINERS[trainer.app] = trainer


def register_task(name: str, factory: Callable[[dict[str, Any]], Any]) -> None:
    """Register a training task factory: ``factory(parameters) -> TrainingTask``."""
    TASK_FACTORIES[name] = factory


def register_index(index: EmbeddingIndex) -> None:
    """Register an embedding index to fill on activation."""
    EMBEDDING_INDEXES[index.name] = index


def register_evaluator(task: str, datasets: tuple[str, ...], run: Callable[..., dict[str, Any]]) -> None:
    """Register ``manage.py evaluate TASK``: ``run(dataset=, train_dir=, test_dir=, options=)``."""
    EVALUATORS[task] = Evaluator(task, datasets, run)


def register_splitter(name: str, split: Callable[[Path, Path, float, int], dict[str, Any]], *, rule: str) -> None:
    """Register ``manage.py split_dataset NAME``: ``split(data_dir, out, test_fraction, seed) -> summary``."""
    SPLITTERS[name] = Splitter(name, split, rule)
