"""Training jobs: the one path by which the platform trains what its apps serve.

``manage.py train``, the admin's Retrain and ``POST /api/v1/training-jobs`` all create a
:class:`~backbone.models.TrainingJob` (``backbone.services.start_training_job``) that a worker on
the ``training`` queue runs here:

1. plan: the named apps (all registered ones by default) that have data; an app without data is
   skipped and the log says so;
2. one multi-task fine-tune of the backbone with the tasks of every app with data, when a named
   app needs one (search, chatbot); recommend and ads alone train on the active backbone;
3. the new version's embeddings (products, creatives, ...) are filled while it is ``activating``;
4. each app's own model (ranker, recommender, pCTR model) is fitted on that version;
5. the version and every app model are activated together; on any failure nothing switches and
   the previous versions keep serving.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psutil
from django.apps import apps as django_apps
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from backbone import gate, lifecycle, registry, services
from backbone.models import ModelVersion, TrainedModel, TrainingJob
from backbone.multitask import MultiTaskTrainer, TrainingCancelled, TrainingConfig
from backbone.queue import one_at_a_time

logger = logging.getLogger(__name__)

TRAINING_PARAMETERS = ("epochs", "batch_size", "lr", "head_lr", "seed", "layer_decay", "freeze_word_embeddings")
Progress = Callable[[float, str], None]


@dataclass
class Plan:
    """What one job trains: the apps (with data) in order, the backbone tasks, and what was skipped."""

    apps: list[registry.AppTrainer]
    tasks: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


def plan_training(params: dict[str, Any]) -> Plan:
    """Resolve a job's apps and backbone tasks against what the database holds now.

    Raises services.TrainingError when no named app has data. The backbone is shared, so a fine-tune
    carries the tasks of every app with data and refits every such app on the new version.
    """
    named = params.get("apps") or sorted(registry.APP_TRAINERS)
    trainers = {name: registry.APP_TRAINERS[name] for name in sorted(registry.APP_TRAINERS)}
    summaries = {name: trainer.data() for name, trainer in trainers.items()}
    with_data = [name for name in named if summaries[name]]
    skipped = {name: "no data to train on" for name in named if not summaries[name]}
    if not with_data:
        raise services.TrainingError(f"nothing to train: no data for {', '.join(named)}")
    if params.get("tasks"):  # an explicit backbone task list (the admin's and the API's advanced form)
        return Plan([trainers[n] for n in with_data], list(params["tasks"]), skipped)
    if not any(trainers[name].fine_tunes for name in with_data):
        return Plan([trainers[n] for n in with_data], [], skipped)
    apps = [trainers[name] for name in trainers if summaries[name]]
    return Plan(apps, [task for trainer in apps for task in trainer.tasks], skipped)


def cancel_training_job(*, job_id: int) -> bool:
    """Mark a queued or running job cancelled; the running loop stops at its next step."""
    changed = TrainingJob.objects.filter(
        pk=job_id, status__in=[TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING]
    ).update(status=TrainingJob.Status.CANCELLED, finished_at=timezone.now())
    return bool(changed)


def reap_stale_jobs() -> int:
    """Mark running jobs whose worker died failed, with what they left unfinished; return how many.

    A worker is dead when its heartbeat is older than ``TRAINING_HEARTBEAT_TIMEOUT``, or at
    once when it ran on this host and its process is gone. The job's version still activating and
    its app models still training fail with it: nothing of a dead job lingers beside the next one's.
    """
    reconnect_if_broken()
    running = TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING)
    timeout = settings.TRAINING_HEARTBEAT_TIMEOUT
    cutoff = timezone.now() - timedelta(seconds=timeout)
    reaped = 0
    for job_id, worker, heartbeat_at in running.values_list("pk", "worker", "heartbeat_at"):
        if heartbeat_at is not None and heartbeat_at < cutoff:
            job = running.filter(pk=job_id, heartbeat_at__lt=cutoff)  # unless it beat meanwhile
            error = f"worker stopped sending heartbeats for over {timeout}s (it died or was killed)"
        elif _process_gone(worker):
            job = running.filter(pk=job_id)
            error = f"worker process {worker} is gone (it died or was killed)"
        else:
            continue
        if job.update(status=TrainingJob.Status.FAILED, error=error, finished_at=timezone.now()):
            _fail_unfinished_models(job_id, f"its training job #{job_id} failed: {error}")
            reaped += 1
    if reaped:
        logger.warning("marked %d stale training job(s) failed", reaped)
    return reaped


def _process_gone(worker: str) -> bool:
    """Whether ``worker`` (``host:pid``) ran on this host and its process no longer exists."""
    worker_host, _, pid = worker.rpartition(":")
    return worker_host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid))


def _fail_unfinished_models(job_id: int, error: str) -> None:
    """Fail the rows of every trained-model class that job ``job_id`` left queued, training or activating."""
    unfinished = [TrainedModel.State.QUEUED, TrainedModel.State.TRAINING, TrainedModel.State.ACTIVATING]
    for model in django_apps.get_models():
        if issubclass(model, TrainedModel):
            model.objects.filter(training_job_id=job_id, state__in=unfinished).update(
                state=TrainedModel.State.FAILED, error=error, finished_at=timezone.now()
            )


def reconnect_if_broken() -> None:
    """Drop this thread's database connection if it broke (the database restarted) or is past CONN_MAX_AGE.

    What Django does at each web request, for long-lived callers (the reaper, a waiting or training
    job, the heartbeat thread); outside a transaction only. The next query connects again.
    """
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def claim_training_job(*, job_id: int, poll: float = 5.0) -> bool:
    """Move a queued job to running once no other job runs; False when it is not queued (any more).

    Jobs run one at a time: they fine-tune the one shared backbone and switch the models of every
    app with data, so two running at once would activate two versions of one app. Meanwhile this
    waits (the job stays queued), reaping jobs whose worker died, so a dead job holds the next one
    up no longer than the heartbeat timeout (at once when it ran on this host).
    """
    waiting_for = None
    while True:
        reap_stale_jobs()
        with one_at_a_time("backbone.claim_training_job"):  # claims are serialised, so check-then-update is safe
            if not TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).exists():
                return False
            other = TrainingJob.objects.filter(status=TrainingJob.Status.RUNNING).values_list("pk", flat=True).first()
            if other is None:
                now = timezone.now()
                return bool(
                    TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(
                        status=TrainingJob.Status.RUNNING,
                        started_at=now,
                        heartbeat_at=now,
                        worker=f"{socket.gethostname()}:{os.getpid()}",
                    )
                )
        if other != waiting_for:
            services.append_job_log(job_id, f"waiting for training job #{other} to finish (jobs run one at a time)")
            logger.info("training job %s waits for training job %s", job_id, other)
            waiting_for = other
        time.sleep(poll)


class _Heartbeat(threading.Thread):
    """Touches a running job's heartbeat every few seconds, also through long steps."""

    def __init__(self, job_id: int):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id = job_id
        self.interval = max(1.0, min(30.0, settings.TRAINING_HEARTBEAT_TIMEOUT / 4))
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval):
                try:
                    reconnect_if_broken()
                    TrainingJob.objects.filter(pk=self.job_id, status=TrainingJob.Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError as exc:  # the database restarting: keep beating once it is back
                    logger.warning("training job %s: heartbeat failed (%s); retrying", self.job_id, exc)
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> _Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.join()


def job_progress(job_id: int) -> Progress:
    """Return ``progress(fraction, message)`` that writes the job's progress and log.

    Repeats of one kind of message (same first word, such as ``step``) are written at most every 2 s.
    """
    last: dict[str, Any] = {"at": 0.0, "kind": None}

    def progress(fraction: float, message: str) -> None:
        now, kind = time.monotonic(), message.split(" ", 1)[0]
        if fraction < 1.0 and kind == last["kind"] and now - last["at"] < 2.0:
            return
        last.update(at=now, kind=kind)
        TrainingJob.objects.filter(pk=job_id).update(progress=round(fraction, 4), heartbeat_at=timezone.now())
        services.append_job_log(job_id, message)
        logger.info("training job %s: %.0f%% %s", job_id, fraction * 100, message)

    return progress


def scaled(progress: Progress, start: float, end: float) -> Progress:
    """Map a step's own 0..1 progress into ``start..end`` of the job's."""
    return lambda fraction, message: progress(start + (end - start) * min(1.0, max(0.0, fraction)), message)


def run_training_job(*, job_id: int) -> TrainingJob | None:
    """Claim and run one training job (see the module docstring); None when it was already claimed.

    Side effects: model folders under ``MODELS_DIR``, model rows, embeddings, the job row as it runs.
    """
    if not claim_training_job(job_id=job_id):
        logger.info("training job %s is not queued any more; skipping", job_id)
        return None
    job = TrainingJob.objects.get(pk=job_id)
    progress = job_progress(job_id)

    def should_stop() -> bool:
        # Cancelled by an operator, or failed by the reaper: either way stop spending compute.
        return not TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.RUNNING).exists()

    with _Heartbeat(job_id):
        try:
            version, rows, verdict = _run_plan(job, progress, should_stop)
        except TrainingCancelled as exc:
            services.append_job_log(job_id, str(exc))
        except Exception as exc:
            logger.exception("training job %s failed", job_id)
            reconnect_if_broken()  # the failure may be the database restarting: record it on a new connection
            services.append_job_log(job_id, f"failed: {type(exc).__name__}: {exc}")
            TrainingJob.objects.filter(pk=job_id).exclude(status=TrainingJob.Status.CANCELLED).update(
                status=TrainingJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}", finished_at=timezone.now()
            )
        else:
            _finish(job, version, rows, verdict)
    return TrainingJob.objects.get(pk=job_id)


def _run_plan(
    job: TrainingJob, progress: Progress, should_stop
) -> tuple[ModelVersion, list[TrainedModel], gate.Verdict | None]:
    """Fine-tune (if planned), embed, fit each app; activate everything together unless told not to
    (or, in a gated run, unless the gate holds it back)."""
    plan = plan_training(job.parameters)
    params = {**{k: v for t in plan.apps for k, v in t.parameters.items()}, **job.parameters}
    for app, reason in plan.skipped.items():
        progress(0.0, f"skipping {app}: {reason}")
    progress(0.0, f"apps {[t.app for t in plan.apps]}; backbone tasks {plan.tasks or 'none (active backbone)'}")
    tune_end = 0.7 if plan.tasks else 0.0
    version = (
        fine_tune(job.pk, params, plan.tasks, scaled(progress, 0.0, tune_end), should_stop)
        if plan.tasks
        else services.get_active_version()
    )
    try:
        rows = _fit_apps(job, plan, params, version, tune_end, progress, should_stop)
        verdict = _switch(job, plan, params, version, rows, progress)
    except BaseException as exc:
        if version.training_job_id == job.pk:  # the new version never served: it failed with the job
            lifecycle.fail(ModelVersion, pk=version.pk, error=f"its training job failed: {type(exc).__name__}: {exc}")
        raise
    return version, rows, verdict


def _fit_apps(
    job: TrainingJob, plan: Plan, params: dict, version: ModelVersion, start: float, progress: Progress, should_stop
) -> list[TrainedModel]:
    """Embed for ``version`` (when new) and fit each planned app on it; return the new app models."""
    new = version.training_job_id == job.pk
    embed_end = start + 0.1 if new else start
    if new:
        services.embed_for_activation(version=version, progress=scaled(progress, start, embed_end))
        version.refresh_from_db()
    fits = [t for t in plan.apps if t.fit is not None]
    rows = []
    for i, trainer in enumerate(fits):
        step = scaled(progress, *(embed_end + (1 - embed_end) * j / len(fits) for j in (i, i + 1)))
        step(0.0, f"training {trainer.app} on backbone {version.name}")
        row = trainer.fit(version=version, parameters=params, job_id=job.pk, progress=step)
        if should_stop():
            raise TrainingCancelled(f"cancelled after training {trainer.app}")
        if row is not None:
            rows.append(row)
    return rows


def _switch(
    job: TrainingJob, plan: Plan, params: dict, version: ModelVersion, rows: list[TrainedModel], progress: Progress
) -> gate.Verdict | None:
    """Serve ``version`` and ``rows`` together, unless ``activate`` is false or a gated run's
    validation gate holds them back (then they stay ready); return the gate's verdict, if judged."""
    verdict = None
    if params.get("activate", True) and params.get("gate"):
        verdict = gate.judge(version=version, rows=rows, apps=plan.apps, tolerance=float(params.get("tolerance", 0.0)))
        for line in verdict.lines:
            progress(0.98, f"validation gate: {line}")
    if params.get("activate", True) and (verdict is None or verdict.promote):
        progress(0.99, "activating " + ", ".join([version.name, *(row.name for row in rows)]))
        services.switch_together(version=version, rows=rows)
    elif version.training_job_id == job.pk:
        ModelVersion.objects.filter(pk=version.pk).update(state=ModelVersion.State.READY)
    if verdict is not None and not verdict.promote:
        gate.held_back.send(sender=TrainingJob, job_id=job.pk, verdict=verdict)
    return verdict


def fine_tune(job_id: int, params: dict[str, Any], tasks: list[str], progress: Progress, should_stop) -> ModelVersion:
    """One multi-task fine-tune of the base encoder with ``tasks``; return the new (ready) version.

    Always from the base (``BACKBONE_BASE_MODEL`` or the packaged MiniLM), as ``evaluate`` trains:
    retraining never compounds earlier fine-tunes, and every head is trained anew anyway.
    """
    base = services.ensure_base_version()
    progress(0.0, f"fine-tuning backbone {base.name} with tasks {tasks}")
    built = [registry.TASK_FACTORIES[name](params) for name in tasks]
    encoder = services.load_encoder(base)
    config = TrainingConfig(**{k: params[k] for k in TRAINING_PARAMETERS if k in params})
    result = MultiTaskTrainer(encoder, built, config, progress=progress, should_stop=should_stop).fit()
    return services.save_version(
        encoder=encoder,
        base=base,
        heads={t.name: (result.heads[t.name], t.head_config()) for t in built},
        metrics={
            "tasks": result.metrics,
            "steps": result.steps,
            "seconds": result.seconds,
            "device": str(encoder.device),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        },
        training={"job_id": job_id, "parameters": params, "history": result.history},
        job_id=job_id,
    )


def _finish(job: TrainingJob, version: ModelVersion, rows: list[TrainedModel], verdict: gate.Verdict | None) -> None:
    """Record success (unless the job was cancelled or reaped meanwhile), with the gate's verdict."""
    metrics = {"backbone": version.name, **{row._meta.model_name: {"name": row.name, **row.metrics} for row in rows}}
    if version.tasks and version.training_job_id == job.pk:
        metrics["tasks"] = version.metrics.get("tasks", {})
    if verdict is not None:
        metrics["gate"] = {"promoted": verdict.promote, "lines": verdict.lines, "scores": verdict.scores}
    with transaction.atomic():
        finished = TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).update(
            status=TrainingJob.Status.SUCCEEDED,
            progress=1.0,
            metrics=metrics,
            result_version=version if version.training_job_id == job.pk else None,
            finished_at=timezone.now(),
        )
    if finished and verdict is not None and not verdict.promote:
        services.append_job_log(
            job.pk, f"done: kept what serves; {version.name}, {[r.name for r in rows]} are ready, not active"
        )
    elif finished:
        services.append_job_log(job.pk, f"done: serving backbone {version.name}, {[r.name for r in rows]}")
    else:
        for row in rows:
            lifecycle.fail(type(row), pk=row.pk, error="its training job was cancelled")
