"""Operations on the shared backbone: versions, the serving encoder, training jobs, activation."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import torch
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from transformers import AutoTokenizer

from backbone import errors, lifecycle, registry
from backbone.encoder import Encoder, packaged_model_path, resolve_device
from backbone.models import ModelVersion, RetrainingSchedule, TrainingJob
from backbone.multitask import save_head
from backbone.onnx_encoder import OnnxEncoder, export
from backbone.queue import enqueue_on_commit

logger = logging.getLogger(__name__)

BASE_VERSION_NAME = "base"
_ENCODER_LOCK = threading.RLock()
_ACTIVE: dict[str, Any] = {"version": None, "checked_at": 0.0}
_LOADED: dict[int, Encoder] = {}
_SERVING: dict[int, Encoder | OnnxEncoder] = {}  # version id -> its serving encoder
ACTIVE_CHECK_SECONDS = 2.0


class TrainingError(errors.InvalidInput):
    """A training job cannot run as asked (bad parameters, no data): 400 on ``parameters`` in the API."""

    default_field = "parameters"


# --- versions -------------------------------------------------------------------------------


def base_model_path() -> Path:
    """Return the folder of the base encoder: ``BACKBONE_BASE_MODEL`` or the packaged MiniLM."""
    if settings.BACKBONE_BASE_MODEL:
        path = Path(settings.BACKBONE_BASE_MODEL)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"BACKBONE_BASE_MODEL {path} is not a Hugging Face model folder")
        return path
    return packaged_model_path()


def ensure_base_version() -> ModelVersion:
    """Return the version that points at the base encoder, creating it (active) if no version is active.

    Side effects: may insert a ModelVersion row.
    """
    path = str(base_model_path())
    with transaction.atomic():
        version, _ = ModelVersion.objects.get_or_create(
            name=BASE_VERSION_NAME, defaults={"path": path, "state": ModelVersion.State.READY}
        )
        if version.path != path:
            version.path = path
            version.save(update_fields=["path"])
        if not ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE).exists():
            ModelVersion.objects.filter(pk=version.pk).update(
                state=ModelVersion.State.ACTIVE, activated_at=timezone.now()
            )
            version.refresh_from_db()
    return version


def ensure_migrated() -> None:
    """Raise ValueError when the database lacks migrations (pgvector, pg_trgm, tables): for
    evaluators that index into PostgreSQL, so that they fail before training, not after."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        raise ValueError(
            f"the database has {len(pending)} unapplied migrations (first: {pending[0][0]}); "
            "run `python manage.py migrate` first"
        )


def get_active_version() -> ModelVersion:
    """Return the serving version (the base one on a fresh install)."""
    version = ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE).first()
    return version or ensure_base_version()


def load_encoder(version: ModelVersion, device: str | None = None) -> Encoder:
    """Load the encoder weights of ``version`` from its folder."""
    if settings.BACKBONE_TORCH_THREADS:
        torch.set_num_threads(settings.BACKBONE_TORCH_THREADS)
    return Encoder.load(
        version.path, device=device or settings.BACKBONE_DEVICE, max_length=settings.BACKBONE_MAX_LENGTH
    )


def version_encoder(version: ModelVersion) -> Encoder:
    """Return the process's inference encoder for ``version`` (active or not), loading it once; never train it."""
    with _ENCODER_LOCK:
        encoder = _LOADED.get(version.pk)
        if encoder is None:
            logger.info("loading backbone version %s from %s", version.name, version.path)
            encoder = _LOADED[version.pk] = load_encoder(version)
        return encoder


def reset_caches() -> None:
    """Forget every loaded encoder and the cached active version (tests; after swapping model files)."""
    with _ENCODER_LOCK:
        _ACTIVE.update(version=None, checked_at=0.0)
        _LOADED.clear()
        _SERVING.clear()


def active_version() -> ModelVersion:
    """The active version, re-read at most every ``ACTIVE_CHECK_SECONDS`` per process."""
    now = time.monotonic()
    with _ENCODER_LOCK:
        cached = _ACTIVE
        if cached["version"] is None or now - cached["checked_at"] >= ACTIVE_CHECK_SECONDS:
            cached.update(version=get_active_version(), checked_at=now)
        return cached["version"]


def active_encoder() -> tuple[ModelVersion, Encoder]:
    """Return (active version, its PyTorch encoder), loaded once per process and reloaded after a switch."""
    version = active_version()
    return version, version_encoder(version)


def serving_encoder(version: ModelVersion) -> Encoder | OnnxEncoder:
    """The encoder that requests of ``version`` are served with: on the CPU its ONNX Runtime copy
    (``backbone.onnx_encoder``: the same vectors, 2.6-2.9x faster for one short text), loaded once
    per process from :func:`export_serving_encoder`'s file; its PyTorch encoder on a GPU or with
    ``BACKBONE_ONNX_SERVING`` off."""
    if not serves_with_onnx():
        return version_encoder(version)
    with _ENCODER_LOCK:
        encoder = _SERVING.get(version.pk)
        if encoder is None:
            path = export_serving_encoder(version)
            tokenizer = AutoTokenizer.from_pretrained(version.path, local_files_only=True)
            if len(_SERVING) >= 2:  # the active version and one being switched to
                _SERVING.clear()
            encoder = _SERVING[version.pk] = OnnxEncoder(
                path, tokenizer, max_length=settings.BACKBONE_MAX_LENGTH, threads=settings.BACKBONE_TORCH_THREADS or 1
            )
        return encoder


def serves_with_onnx() -> bool:
    """Whether requests are encoded by ONNX Runtime copies (``BACKBONE_ONNX_SERVING``, on the CPU)."""
    return settings.BACKBONE_ONNX_SERVING and resolve_device(settings.BACKBONE_DEVICE).type == "cpu"


def export_serving_encoder(version: ModelVersion) -> Path:
    """The ONNX file of ``version``'s serving encoder (``MODELS_DIR/onnx``), exported unless it is there:
    by ``bootstrap_platform`` and the job that fills a version's indexes, so that web processes only load it."""
    path = settings.MODELS_DIR / "onnx" / f"{version.name}-{zlib.crc32(str(version.path).encode()):08x}.onnx"
    if not path.exists():
        logger.info("exporting backbone version %s to %s for serving", version.name, path)
        source = _LOADED.get(version.pk)
        export(
            source if source is not None and source.device.type == "cpu" else load_encoder(version, device="cpu"), path
        )
    return path


def active_serving_encoder() -> tuple[ModelVersion, Encoder | OnnxEncoder]:
    """(active version, :func:`serving_encoder` of it): what search, chat and ads encode a request's text with."""
    version = active_version()
    return version, serving_encoder(version)


def serving_versions() -> list[ModelVersion]:
    """Return the active version followed by any being activated: what new rows are embedded with."""
    return [get_active_version(), *ModelVersion.objects.filter(state=ModelVersion.State.ACTIVATING)]


def serving_encoders() -> list[tuple[ModelVersion, Encoder]]:
    """Return the active version and any being activated, each with its cached encoder.

    New or changed rows are embedded with all of them, so an activation never misses a row.
    """
    versions = serving_versions()
    with _ENCODER_LOCK:
        for stale in set(_LOADED) - {v.pk for v in versions}:
            del _LOADED[stale]
        return [(v, version_encoder(v)) for v in versions]


def preparing() -> list[dict[str, Any]]:
    """What is still being prepared, with progress (0..1): unfinished training jobs and every
    registered index that lacks rows of a serving version (e.g. products after an import)."""
    work = [
        {"what": f"training job #{pk} ({', '.join(p.get('apps') or []) or 'all apps'})", "status": st, "progress": pr}
        for pk, st, pr, p in TrainingJob.objects.filter(
            status__in=[TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING]
        ).values_list("pk", "status", "progress", "parameters")
    ]
    for version in serving_versions():
        for index in registry.EMBEDDING_INDEXES.values():
            done, total = index.count(version.pk)
            if done < total:
                work.append({"what": f"embedding {index.name} with {version.name}", "progress": round(done / total, 4)})
    return work


# --- training jobs --------------------------------------------------------------------------


def start_scheduled_training(*, app: str) -> int | None:
    """Start the gated training job of ``app``'s enabled RetrainingSchedule (``backbone.gate``): it
    trains as ``manage.py train APP`` does and activates only what validates at least as well as
    what serves. None (logged) when there is no such schedule or the app has no data."""
    schedule = RetrainingSchedule.objects.filter(app=app, enabled=True).first()
    if schedule is None:
        logger.info("no enabled retraining schedule for %s: nothing started", app)
        return None
    if app not in registry.APP_TRAINERS or not registry.APP_TRAINERS[app].data():
        logger.warning("scheduled retraining of %s not started: no data to train on", app)
        return None
    job = start_training_job(apps=[app], parameters={"gate": True, "tolerance": schedule.tolerance})
    logger.info("scheduled retraining of %s: training job %s", app, job.pk)
    return job.pk


def start_training_job(
    *,
    apps: list[str] | None = None,
    tasks: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
    user=None,
    enqueue: bool = True,
) -> TrainingJob:
    """Create a queued training job for ``apps`` (all apps with data when None) and enqueue it on commit.

    ``tasks`` picks the backbone tasks of the fine-tune explicitly (their apps are trained on it).
    Raises TrainingError for unknown apps or tasks. Side effects: one TrainingJob row, one Celery
    message on the ``training`` queue (``backbone.jobs`` runs it) unless ``enqueue`` is false (the
    caller then runs ``backbone.jobs.run_training_job`` itself, as ``manage.py train --inline`` does).
    """
    unknown_apps = sorted(set(apps or []) - set(registry.APP_TRAINERS))
    unknown_tasks = sorted(set(tasks or []) - set(registry.TASK_FACTORIES))
    if unknown_apps or unknown_tasks:
        raise TrainingError(
            f"unknown apps {unknown_apps} or tasks {unknown_tasks}; "
            f"apps: {sorted(registry.APP_TRAINERS)}, tasks: {sorted(registry.TASK_FACTORIES)}"
        )
    if tasks and not apps:
        apps = sorted({t.app for t in registry.APP_TRAINERS.values() if set(t.tasks) & set(tasks)})
    params = {**(parameters or {}), "apps": list(apps or []), "tasks": list(tasks or [])}
    with transaction.atomic():
        job = TrainingJob.objects.create(parameters=params, created_by=user)
        if enqueue:
            enqueue_on_commit("backbone.run_training_job", job.pk)
    return job


def append_job_log(job_id: int, line: str) -> None:
    """Append one time-stamped line to a training job's log."""
    lifecycle.append_log(TrainingJob, pk=job_id, line=line)


def save_version(
    *, encoder: Encoder, base: ModelVersion, heads: dict, metrics: dict, training: dict, job_id: int | None = None
) -> ModelVersion:
    """Write a version folder (safetensors weights, config, heads, metrics) and its row (ready)."""
    name = timezone.now().strftime("v%Y%m%d-%H%M%S-%f")
    folder = Path(settings.MODELS_DIR) / name
    tmp = folder.with_name(name + ".partial")
    encoder.save(tmp)
    for task_name, (head, config) in heads.items():
        save_head(tmp / "heads" / task_name, head, config)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (tmp / "training.json").write_text(json.dumps(training, indent=2))
    tmp.rename(folder)  # a version folder is complete or absent
    return ModelVersion.objects.create(
        name=name,
        path=str(folder),
        base=base,
        metrics=metrics,
        tasks=sorted(heads),
        state=ModelVersion.State.READY,
        training_job_id=job_id,
        finished_at=timezone.now(),
    )


def delete_version_files(version: ModelVersion) -> None:
    """Remove a trained version's folder (never the packaged base)."""
    folder = Path(version.path)
    if folder.is_relative_to(Path(settings.MODELS_DIR)) and folder.exists():
        shutil.rmtree(folder)


# --- activation -----------------------------------------------------------------------------


def activate_version(*, version_id: int) -> ModelVersion:
    """Start activating a version: re-embed every index in the background, then switch.

    Serving keeps the old version until every index is complete for the new one.
    """
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version_id)
        if version.state not in (*ModelVersion.SERVABLE, ModelVersion.State.ACTIVATING):
            raise lifecycle.LifecycleError(
                f"{version.name} is {version.state}; only a trained version can be activated"
            )
        if version.state != ModelVersion.State.ACTIVE:
            version.state = ModelVersion.State.ACTIVATING
            version.activation_progress = 0.0
            version.save(update_fields=["state", "activation_progress"])
            enqueue_on_commit("backbone.embed_version", version.pk)
    return version


def roll_back_version() -> ModelVersion:
    """Serve the previously active backbone version again (re-embedding first if its rows were pruned)."""
    previous = lifecycle.previous(ModelVersion)
    if previous is None:
        raise lifecycle.LifecycleError("no earlier backbone version to roll back to")
    return activate_version(version_id=previous.pk)


def schedule_embedding_refresh() -> None:
    """After commit, embed rows that lack embeddings of the active (and any activating) version.

    For bulk writes such as dataset imports. Idempotent: only missing embeddings are computed.
    """
    for version in serving_versions():
        enqueue_on_commit("backbone.embed_version", version.pk)


def embed_version(*, version_id: int, batch_size: int = 256) -> ModelVersion | None:
    """Fill every registered index for ``version_id``; when it is activating, make it the active version.

    Idempotent: only rows missing an embedding of this version are computed.
    """
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        logger.warning("embed_version: version %s is gone", version_id)
        return None
    fill_indexes(version=version, batch_size=batch_size)
    version.refresh_from_db()
    if version.state == ModelVersion.State.ACTIVATING and not _in_running_job(version):
        switch_together(version=version, rows=[])
        version.refresh_from_db()
    return version


def _in_running_job(version: ModelVersion) -> bool:
    """Whether ``version``'s own training job is still running (it then switches the version itself)."""
    return TrainingJob.objects.filter(pk=version.training_job_id, status=TrainingJob.Status.RUNNING).exists()


def embed_for_activation(*, version: ModelVersion, progress=None) -> None:
    """Mark ``version`` activating (new rows are then embedded with it too) and fill every index for it."""
    ModelVersion.objects.filter(pk=version.pk).exclude(state=ModelVersion.State.ACTIVE).update(
        state=ModelVersion.State.ACTIVATING, activation_progress=0.0
    )
    fill_indexes(version=version, progress=progress)


def fill_indexes(*, version: ModelVersion, progress=None, batch_size: int = 256) -> int:
    """Embed what every registered index lacks for ``version``; return how many rows were written.
    Also exports its serving encoder (:func:`export_serving_encoder`) before it can serve."""
    encoder = version_encoder(version)
    if serves_with_onnx():
        export_serving_encoder(version)
    indexes = list(registry.EMBEDDING_INDEXES.values())
    written = 0
    for i, index in enumerate(indexes):

        def step(done: int, total: int, i=i, index=index) -> None:
            fraction = (i + done / max(1, total)) / len(indexes)
            ModelVersion.objects.filter(pk=version.pk).update(activation_progress=fraction)
            if progress:
                progress(fraction, f"embedding {index.name}: {done:,}/{total:,} with {version.name}")

        written += fill_index(index=index, version=version, encoder=encoder, batch_size=batch_size, step=step)
    return written


def fill_index(*, index, version: ModelVersion, encoder: Encoder, batch_size: int = 256, step=None) -> int:
    """Embed rows of ``index`` that lack ``version``'s embedding; return how many were written.

    One filler per (index, version) at a time, through a PostgreSQL advisory lock: a second
    worker waits, then finds nothing left to do, instead of computing the same rows again.
    ``step(done, total)`` is called after each batch.
    """
    key = [zlib.crc32(index.name.encode()) & 0x7FFFFFFF, version.pk]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", key)
    try:
        written = 0
        while ids := index.pending_ids(version.pk, batch_size):
            texts = index.texts(ids)
            ordered = [i for i in ids if i in texts]
            vectors = encoder.encode([texts[i] for i in ordered], batch_size=settings.BACKBONE_BATCH_SIZE)
            index.store(version.pk, dict(zip(ordered, vectors)))
            written += len(ordered)
            done, total = index.count(version.pk)
            if step:
                step(done, total)
            logger.info("index %s: %d/%d embedded with %s", index.name, done, total, version.name)
            if len(ordered) < len(ids):  # rows vanished meanwhile; avoid spinning on them
                break
        return written
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


def switch_together(*, version: ModelVersion, rows: list) -> None:
    """Serve backbone ``version`` and every app model in ``rows`` from one commit, retiring what served before.

    Rows added since the version's embeddings were filled are embedded first, so the switch never
    serves a row without a vector. Side effects: embeddings of versions other than the new and the
    previous one are deleted.
    """
    if version.state != ModelVersion.State.ACTIVE:
        fill_indexes(version=version)
    with transaction.atomic():
        lifecycle.lock_activations(ModelVersion)
        previous = list(
            ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE)
            .exclude(pk=version.pk)
            .values_list("pk", flat=True)
        )
        if version.state != ModelVersion.State.ACTIVE:
            lifecycle.activate(ModelVersion, pk=version.pk)  # retires the previous one
            ModelVersion.objects.filter(pk=version.pk).update(activation_progress=1.0)
        for row in rows:
            lifecycle.activate(type(row), pk=row.pk)
    # Keep the previous version's rows: processes that cached it serve it for up to
    # ACTIVE_CHECK_SECONDS more, and a roll-back to it is instant; they go at the next switch.
    for index in registry.EMBEDDING_INDEXES.values():
        index.prune([version.pk, *previous])
    logger.info("backbone %s is now active with %s", version.name, [row.name for row in rows])


def switch_active_version(*, version_id: int) -> None:
    """Make ``version_id`` the active backbone version in one transaction, retiring the previous one."""
    switch_together(version=ModelVersion.objects.get(pk=version_id), rows=[])
