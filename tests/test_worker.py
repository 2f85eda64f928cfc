"""A real Celery worker process runs the tasks, with the default broker and with Redis."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from backbone import jobs, services
from backbone.models import ModelVersion, TrainingJob
from backbone.tasks import run_training_job
from catalog.models import ProductEmbedding
from catalog.tasks import embed_products
from chatbot.models import Intent, IntentExample
from config import embedded
from config.celery import app, database_broker_url
from tests.factories import ProductFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ROOT = Path(__file__).resolve().parent.parent


def worker_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker process on the test database (the default broker unless ``extra`` says)."""
    env = dict(os.environ, EMBEDDED_DATABASE_NAME=connection.settings_dict["NAME"], STATE_DIR=str(settings.STATE_DIR))
    env["MODELS_DIR"] = str(tmp_path / "models")
    if settings.DATABASE_URL:
        env["DATABASE_URL"] = settings.DATABASE_URL.rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]
    env.pop("CELERY_BROKER_URL", None)
    return {**env, **extra}


@pytest.fixture
def start_worker(tmp_path):
    """Start ``celery worker`` (with beat if asked) as a separate process on the test database; stop it afterwards."""
    procs: list[subprocess.Popen] = []

    def start(broker_url: str | None = None, *, beat: bool = False, **env: str) -> subprocess.Popen:
        if broker_url:
            env["CELERY_BROKER_URL"] = broker_url
        log = open(tmp_path / f"worker-{len(procs)}.log", "w")
        beat_args = ["-B"] if beat else []  # the database scheduler (config.beat)
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,bulk,training", "-c", "1",
             "--without-gossip", "--without-mingle", "-l", "INFO", "-n", f"test{len(procs)}@%h", *beat_args],
            cwd=ROOT, env=worker_env(tmp_path, **env), stdout=log, stderr=subprocess.STDOUT,
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
    for log in sorted(tmp_path.glob("*.log")):
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


# A training worker as far as the reaper can tell: it claims the job and sends heartbeats from the
# same thread a real job uses, but trains nothing (a real fine-tune would only add minutes).
TRAINING_STAND_IN = """
import sys, time, django
django.setup()
from backbone import jobs
assert jobs.claim_training_job(job_id=int(sys.argv[1]))
with jobs._Heartbeat(int(sys.argv[1])):
    time.sleep(600)
"""


def restart_embedded_database(tmp_path: Path, down: float) -> None:
    """Stop the embedded PostgreSQL (every client is disconnected), wait ``down`` seconds, start it again."""
    embedded.stop_server(settings.STATE_DIR)
    time.sleep(down)
    # a new process: this one's pgserver handle still believes the old server runs
    subprocess.run(
        [sys.executable, "manage.py", "embedded_db", "start"], cwd=ROOT, env=worker_env(tmp_path), check=True
    )
    connection.close()  # this process's connection died with the server


def reaps(log: Path) -> int:
    """How many reaper runs a worker's log shows."""
    return len(re.findall(r"backbone\.reap_stale_jobs\[[^]]+\] succeeded", log.read_text()))


def test_reaper_marks_a_killed_workers_job_failed_after_a_database_restart(start_worker, tmp_path):
    if settings.DATABASE_URL:
        pytest.skip("restarts the embedded PostgreSQL, which DATABASE_URL replaces")
    fast = {"TRAINING_REAP_INTERVAL": "1", "TRAINING_HEARTBEAT_TIMEOUT": "20"}
    job = TrainingJob.objects.create()
    start_worker(beat=True, **fast)  # beat inside the default worker, as platform/up.sh starts it
    with open(tmp_path / "training-stand-in.log", "w") as out:
        trainer = subprocess.Popen(
            [sys.executable, "-c", TRAINING_STAND_IN, str(job.pk)],
            cwd=ROOT, env=worker_env(tmp_path, **fast), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: TrainingJob.objects.get(pk=job.pk).status == TrainingJob.Status.RUNNING, 60, "the claim")
        wait_for(lambda: reaps(tmp_path / "worker-0.log"), 60, "beat's first reap")

        restart_embedded_database(tmp_path, down=3)  # beat's sends fail meanwhile (before the fix, all later ones too)
        restarted = timezone.now()
        heartbeat = lambda: TrainingJob.objects.get(pk=job.pk).heartbeat_at  # noqa: E731
        wait_for(lambda: heartbeat() > restarted, 30, "a heartbeat after the restart")
        assert TrainingJob.objects.get(pk=job.pk).status == TrainingJob.Status.RUNNING  # alive: not reaped

        trainer.kill()  # SIGKILL: the training worker dies (OOM killer, crash)
        trainer.wait()
        wait_for(lambda: TrainingJob.objects.get(pk=job.pk).is_finished, 120, "the reaper to mark the job failed")
    finally:
        trainer.kill()
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED
    assert "gone" in job.error or "heartbeat" in job.error
