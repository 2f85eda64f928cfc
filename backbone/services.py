"""Operations on the shared backbone: versions, the serving encoder, training jobs, activation."""

from __future__ import annotations

import json
import logging
import os
import resource
import shutil
import socket
import threading
import time
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import torch
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from backbone import registry
from backbone.encoder import Encoder, packaged_model_path
from backbone.models import ModelVersion, TrainingJob
from backbone.multitask import MultiTaskTrainer, TrainingCancelled, TrainingConfig, save_head

logger = logging.getLogger(__name__)

BASE_VERSION_NAME = "base"
_ENCODER_LOCK = threading.RLock()
_ENCODER_CACHE: dict[str, Any] = {"version_id": None, "encoder": None, "checked_at": 0.0}
_LOADED: dict[int, Encoder] = {}
_INT8: dict[int, tuple[Encoder, Encoder]] = {}  # version id -> (the float encoder it copies, int8 copy)
ACTIVE_CHECK_SECONDS = 2.0


class TrainingError(Exception):
    """A training job cannot run as asked (bad parameters, no data)."""


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
        version, _ = ModelVersion.objects.get_or_create(name=BASE_VERSION_NAME, defaults={"path": path})
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


def _inference_encoder(version: ModelVersion) -> Encoder:
    """Return the process's encoder for ``version``, loading it once (never trained in place)."""
    encoder = _LOADED.get(version.pk)
    if encoder is None:
        logger.info("loading backbone version %s from %s", version.name, version.path)
        encoder = _LOADED[version.pk] = load_encoder(version)
    return encoder


def active_encoder() -> tuple[ModelVersion, Encoder]:
    """Return (active version, its encoder), loaded once per process and reloaded after a switch.

    The active version id is re-read at most every ``ACTIVE_CHECK_SECONDS``.
    """
    now = time.monotonic()
    with _ENCODER_LOCK:
        cached = _ENCODER_CACHE
        if cached["encoder"] is not None and now - cached["checked_at"] < ACTIVE_CHECK_SECONDS:
            return cached["version"], cached["encoder"]
        version = get_active_version()
        if cached["version_id"] != version.pk:
            cached.update(version=version, version_id=version.pk, encoder=_inference_encoder(version))
        cached["checked_at"] = now
        return cached["version"], cached["encoder"]


def active_int8_encoder() -> tuple[ModelVersion, Encoder]:
    """Like :func:`active_encoder`, but an int8 copy of it (``Encoder.quantized``), made once per
    loaded version: for latency-bound one-message encodes on the CPU. On a GPU: the encoder itself."""
    version, encoder = active_encoder()
    if encoder.device.type != "cpu":
        return version, encoder
    with _ENCODER_LOCK:
        source, int8 = _INT8.get(version.pk, (None, None))
        if source is not encoder:
            _INT8.clear()
            int8 = encoder.quantized()
            _INT8[version.pk] = (encoder, int8)
            logger.info("made an int8 copy of backbone version %s for serving", version.name)
        return version, int8


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
        return [(v, _inference_encoder(v)) for v in versions]


# --- training jobs --------------------------------------------------------------------------


def start_training_job(*, tasks: list[str], parameters: dict[str, Any] | None = None, user=None) -> TrainingJob:
    """Create a queued multi-task training job and enqueue it on commit.

    Raises TrainingError for unknown tasks. Side effects: one TrainingJob row, one Celery message.
    """
    unknown = sorted(set(tasks) - set(registry.TASK_FACTORIES))
    if not tasks or unknown:
        raise TrainingError(f"unknown training tasks: {unknown or tasks}; known: {sorted(registry.TASK_FACTORIES)}")
    params = {"tasks": list(tasks), **(parameters or {})}
    with transaction.atomic():
        job = TrainingJob.objects.create(kind=TrainingJob.Kind.MULTITASK, parameters=params, created_by=user)
        transaction.on_commit(lambda: _enqueue_training(job.pk))
    return job


def _enqueue_training(job_id: int) -> None:
    from backbone.tasks import run_training_job

    run_training_job.delay(job_id)


def cancel_training_job(*, job_id: int) -> bool:
    """Mark a queued or running job cancelled; the running loop stops at its next step."""
    changed = TrainingJob.objects.filter(
        pk=job_id, status__in=[TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING]
    ).update(status=TrainingJob.Status.CANCELLED, finished_at=timezone.now())
    return bool(changed)


def reap_stale_jobs() -> int:
    """Mark running jobs whose worker died as failed; return how many.

    A worker is dead when its heartbeat is older than ``TRAINING_HEARTBEAT_TIMEOUT``, or at
    once when it ran on this host and its process is gone.
    """
    running = TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING)
    cutoff = timezone.now() - timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT)
    reaped = running.filter(heartbeat_at__lt=cutoff).update(
        status=TrainingJob.Status.FAILED,
        error=f"worker stopped sending heartbeats for over {settings.TRAINING_HEARTBEAT_TIMEOUT}s (it died or was killed)",
        finished_at=timezone.now(),
    )
    host = socket.gethostname()
    for job_id, worker in running.values_list("pk", "worker"):
        worker_host, _, pid = worker.rpartition(":")
        if worker_host == host and pid.isdigit() and not psutil.pid_exists(int(pid)):
            reaped += running.filter(pk=job_id).update(
                status=TrainingJob.Status.FAILED,
                error=f"worker process {worker} is gone (it died or was killed)",
                finished_at=timezone.now(),
            )
    if reaped:
        logger.warning("marked %d stale training job(s) failed", reaped)
    return reaped


def _append_log(job_id: int, line: str) -> None:
    stamp = timezone.now().strftime("%H:%M:%S")
    TrainingJob.objects.filter(pk=job_id).update(log=Concat(F("log"), Value(f"{stamp} {line}\n")))


def claim_training_job(*, job_id: int) -> bool:
    """Atomically move a queued job to running; False when someone else has it (or it is gone)."""
    now = timezone.now()
    return bool(
        TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(
            status=TrainingJob.Status.RUNNING,
            started_at=now,
            heartbeat_at=now,
            worker=f"{socket.gethostname()}:{os.getpid()}",
        )
    )


class _Heartbeat(threading.Thread):
    """Touches a running job's heartbeat every few seconds, also through long evaluations."""

    def __init__(self, job_id: int):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id = job_id
        self.interval = max(1.0, min(30.0, settings.TRAINING_HEARTBEAT_TIMEOUT / 4))
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                TrainingJob.objects.filter(pk=self.job_id, status=TrainingJob.Status.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> _Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.join()


def run_training_job(*, job_id: int) -> TrainingJob | None:
    """Claim and run one training job; write the new version folder and row on success.

    Returns None when the job was already claimed. Side effects: model files under
    ``MODELS_DIR``, a ModelVersion row, and updates to the job row as it runs.
    """
    if not claim_training_job(job_id=job_id):
        logger.info("training job %s is not queued any more; skipping", job_id)
        return None
    job = TrainingJob.objects.get(pk=job_id)
    params = job.parameters
    last_write = [0.0]

    def progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - last_write[0] < 2.0:
            return
        last_write[0] = now
        TrainingJob.objects.filter(pk=job_id).update(progress=round(fraction, 4), heartbeat_at=timezone.now())
        _append_log(job_id, message)
        logger.info("training job %s: %.0f%% %s", job_id, fraction * 100, message)

    def should_stop() -> bool:
        # Cancelled by an operator, or failed by the reaper: either way stop spending compute.
        return not TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.RUNNING).exists()

    with _Heartbeat(job_id):
        return _train(job_id, params, progress, should_stop)


TRAINING_PARAMETERS = ("epochs", "batch_size", "lr", "head_lr", "seed", "layer_decay", "freeze_word_embeddings")


def _train(job_id: int, params: dict[str, Any], progress, should_stop) -> TrainingJob:
    """The body of :func:`run_training_job` once the job is claimed."""
    try:
        base = get_active_version()
        _append_log(job_id, f"base version {base.name}; tasks {params['tasks']}")
        tasks = [registry.TASK_FACTORIES[name](params) for name in params["tasks"]]
        encoder = load_encoder(base)
        config = TrainingConfig(**{k: params[k] for k in TRAINING_PARAMETERS if k in params})
        result = MultiTaskTrainer(encoder, tasks, config, progress=progress, should_stop=should_stop).fit()
        version = save_version(
            encoder=encoder,
            base=base,
            heads={t.name: (result.heads[t.name], t.head_config()) for t in tasks},
            metrics={
                "tasks": result.metrics,
                "baselines": result.baselines,
                "steps": result.steps,
                "seconds": result.seconds,
                "device": str(encoder.device),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            },
            training={"job_id": job_id, "parameters": params, "history": result.history},
        )
    except TrainingCancelled as exc:
        _append_log(job_id, str(exc))
        return TrainingJob.objects.get(pk=job_id)
    except Exception as exc:
        logger.exception("training job %s failed", job_id)
        TrainingJob.objects.filter(pk=job_id).exclude(status=TrainingJob.Status.CANCELLED).update(
            status=TrainingJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
        )
        return TrainingJob.objects.get(pk=job_id)

    finished = TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.RUNNING).update(
        status=TrainingJob.Status.SUCCEEDED,
        progress=1.0,
        metrics=version.metrics,
        result_version=version,
        finished_at=timezone.now(),
    )
    if not finished:  # cancelled or reaped while saving: drop the orphan version
        delete_version_files(version)
        version.delete()
        return TrainingJob.objects.get(pk=job_id)
    _append_log(job_id, f"wrote version {version.name}")
    if params.get("activate"):
        activate_version(version_id=version.pk)
    return TrainingJob.objects.get(pk=job_id)


def save_version(*, encoder: Encoder, base: ModelVersion, heads: dict, metrics: dict, training: dict) -> ModelVersion:
    """Write a version folder (safetensors weights, config, heads, metrics) and its row."""
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
        name=name, path=str(folder), base=base, metrics=metrics, tasks=sorted(heads), state=ModelVersion.State.READY
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
        if version.state != ModelVersion.State.ACTIVE:
            version.state = ModelVersion.State.ACTIVATING
            version.activation_progress = 0.0
            version.save(update_fields=["state", "activation_progress"])
            transaction.on_commit(lambda: _enqueue_embed(version.pk))
    return version


def schedule_embedding_refresh() -> None:
    """After commit, embed rows that lack embeddings of the active (and any activating) version.

    For bulk writes such as dataset imports. Idempotent: only missing embeddings are computed.
    """
    for version in serving_versions():
        transaction.on_commit(lambda version_id=version.pk: _enqueue_embed(version_id))


def _enqueue_embed(version_id: int) -> None:
    from backbone.tasks import embed_version

    embed_version.delay(version_id)


def embed_version(*, version_id: int, batch_size: int = 256) -> ModelVersion | None:
    """Fill every registered index for ``version_id``; when complete, make it the active version.

    Idempotent: only rows missing an embedding of this version are computed.
    """
    version = ModelVersion.objects.filter(pk=version_id).first()
    if version is None:
        logger.warning("embed_version: version %s is gone", version_id)
        return None
    with _ENCODER_LOCK:  # the worker's cached copy: repeated refreshes do not reload weights
        encoder = _inference_encoder(version)
    for index in registry.EMBEDDING_INDEXES.values():
        fill_index(index=index, version=version, encoder=encoder, batch_size=batch_size)
    if version.state == ModelVersion.State.ACTIVATING:
        switch_active_version(version_id=version.pk)
    version.refresh_from_db()
    return version


def fill_index(*, index, version: ModelVersion, encoder: Encoder, batch_size: int = 256) -> int:
    """Embed rows of ``index`` that lack ``version``'s embedding; return how many were written.

    One filler per (index, version) at a time, through a PostgreSQL advisory lock: a second
    worker waits, then finds nothing left to do, instead of computing the same rows again.
    """
    key = [zlib.crc32(index.name.encode()) & 0x7FFFFFFF, version.pk]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", key)
    try:
        return _fill_index(index=index, version=version, encoder=encoder, batch_size=batch_size)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", key)


def _fill_index(*, index, version: ModelVersion, encoder: Encoder, batch_size: int) -> int:
    written = 0
    while True:
        ids = index.pending_ids(version.pk, batch_size)
        if not ids:
            break
        texts = index.texts(ids)
        ordered = [i for i in ids if i in texts]
        vectors = encoder.encode([texts[i] for i in ordered], batch_size=settings.BACKBONE_BATCH_SIZE)
        index.store(version.pk, dict(zip(ordered, vectors)))
        written += len(ordered)
        done, total = index.count(version.pk)
        ModelVersion.objects.filter(pk=version.pk).update(activation_progress=done / max(1, total))
        logger.info("index %s: %d/%d embedded with %s", index.name, done, total, version.name)
        if len(ordered) < len(ids):  # rows vanished meanwhile; avoid spinning on them
            break
    return written


def switch_active_version(*, version_id: int) -> None:
    """Make ``version_id`` the active version in one transaction, retiring the previous one."""
    with transaction.atomic():
        previous = list(
            ModelVersion.objects.select_for_update()
            .filter(state=ModelVersion.State.ACTIVE)
            .exclude(pk=version_id)
            .values_list("pk", flat=True)
        )
        ModelVersion.objects.filter(pk__in=previous).update(state=ModelVersion.State.RETIRED)
        ModelVersion.objects.filter(pk=version_id).update(
            state=ModelVersion.State.ACTIVE, activated_at=timezone.now(), activation_progress=1.0
        )
    # Keep the previous version's rows: processes that cached it serve it for up to
    # ACTIVE_CHECK_SECONDS more; they go at the next switch.
    for index in registry.EMBEDDING_INDEXES.values():
        index.prune([version_id, *previous])
    logger.info("version %s is now active", version_id)
