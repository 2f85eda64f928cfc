"""A real Celery worker process runs the tasks, with the default broker and with Redis."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from backbone import jobs, services
from backbone.models import ModelVersion, TrainingJob
from backbone.tasks import run_training_job
from catalog.models import ProductEmbedding
from catalog.tasks import embed_products
from chatbot.models import Intent, IntentExample
from config.celery import app, database_broker_url
from tests.factories import ProductFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def start_worker(tmp_path):
    """Start ``celery worker`` as a separate process on the test database; stop it afterwards."""
    procs: list[subprocess.Popen] = []

    def start(broker_url: str | None = None) -> subprocess.Popen:
        env = dict(
            os.environ, EMBEDDED_DATABASE_NAME=connection.settings_dict["NAME"], STATE_DIR=str(settings.STATE_DIR)
        )
        env["MODELS_DIR"] = str(tmp_path / "models")
        if settings.DATABASE_URL:
            env["DATABASE_URL"] = settings.DATABASE_URL.rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
        env.pop("CELERY_BROKER_URL", None)
        if broker_url:
            env["CELERY_BROKER_URL"] = broker_url
        log = open(tmp_path / f"worker-{len(procs)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,bulk,training", "-c", "1",
             "--without-gossip", "--without-mingle", "-l", "INFO", "-n", f"test{len(procs)}@%h"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    for log in sorted(tmp_path.glob("worker-*.log")):
        print(f"--- {log.name}\n{log.read_text()[-3000:]}")


def send(task, args: list, broker_url: str) -> None:
    """Publish a task to ``broker_url`` (the test database's broker tables, or Redis)."""
    with app.connection_for_write(broker_url) as conn:
        task.apply_async(args=args, connection=conn)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def banking77_subset(data_dir: Path, intents: int = 8, per_intent: int = 12) -> None:
    """Store the first ``per_intent`` examples of the first ``intents`` BANKING77 intents."""
    kept: dict[str, list[str]] = {}
    with open(data_dir / "banking77" / "train.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            texts = kept.setdefault(row["category"], []) if len(kept) < intents or row["category"] in kept else None
            if texts is not None and len(texts) < per_intent:
                texts.append(row["text"])
    for name, texts in kept.items():
        intent = Intent.objects.create(name=name, dataset="banking77")
        IntentExample.objects.bulk_create(IntentExample(intent=intent, text=t) for t in texts)


def test_worker_runs_a_banking77_training_job_with_the_default_broker(start_worker, data_dir):
    banking77_subset(data_dir)
    services.ensure_base_version()
    job = TrainingJob.objects.create(parameters={"apps": ["chatbot"], "epochs": 1, "batch_size": 16})
    start_worker()
    send(run_training_job, [job.pk], database_broker_url())

    def finished():
        job.refresh_from_db()
        return job.is_finished

    wait_for(finished, 240, "the training job to finish")
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    assert job.worker.rpartition(":")[2] != str(os.getpid()), "run by the worker process, not by the test"
    assert job.started_at < job.finished_at and job.progress == 1.0
    version = job.result_version
    assert version.state == ModelVersion.State.ACTIVE and version.tasks == ["intents"]
    assert Path(version.path, "model.safetensors").exists()
    assert job.metrics["tasks"]["intents"]["n_val"] > 0


def test_worker_embeds_products_through_redis(start_worker):
    import redis

    redis.Redis.from_url(REDIS_URL).ping()  # Redis runs on development and CI machines
    version = services.ensure_base_version()
    products = ProductFactory.create_batch(3)
    start_worker(REDIS_URL)
    send(embed_products, [[p.pk for p in products]], REDIS_URL)
    wait_for(lambda: ProductEmbedding.objects.filter(version=version).count() == 3, 120, "3 product embeddings")
    first = dict(ProductEmbedding.objects.filter(version=version).values_list("product_id", "created_at"))
    send(embed_products, [[p.pk for p in products]], REDIS_URL)  # run it twice: rows refreshed, not doubled

    def refreshed():
        rows = dict(ProductEmbedding.objects.filter(version=version).values_list("product_id", "created_at"))
        return all(rows[pid] > first[pid] for pid in first)

    wait_for(refreshed, 60, "the second run to refresh the embeddings")
    assert ProductEmbedding.objects.filter(version=version).count() == 3


def test_job_whose_worker_dies_is_marked_failed(start_worker, data_dir):
    banking77_subset(data_dir, intents=20, per_intent=30)
    services.ensure_base_version()
    job = TrainingJob.objects.create(parameters={"apps": ["chatbot"], "epochs": 3, "batch_size": 8})
    start_worker()
    send(run_training_job, [job.pk], database_broker_url())

    def running():
        job.refresh_from_db()
        return job.status == TrainingJob.Status.RUNNING and job.worker

    wait_for(running, 120, "the job to start")
    pid = int(job.worker.rpartition(":")[2])
    os.kill(pid, signal.SIGKILL)  # the process running the job dies (OOM killer, crash)
    wait_for(lambda: jobs.reap_stale_jobs() or TrainingJob.objects.get(pk=job.pk).is_finished, 30, "the reaper")
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED
    assert "gone" in job.error or "heartbeat" in job.error
