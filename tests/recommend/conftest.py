"""Fixtures of the recommend tests: a small shop with two taste groups and a trained model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backbone import jobs, lifecycle
from backbone.models import TrainingJob
from backbone.services import start_training_job
from catalog.models import Event
from recommend import services
from recommend.models import RecommenderModel
from tests.factories import CustomerFactory, EventFactory, ProductFactory

T0 = datetime(2024, 1, 1, tzinfo=UTC)
QUICK = {"bags": 2, "ranker_users": 100}  # a tiny shop needs few rankers


@pytest.fixture
def shop(db):
    """Ten 'tools/saws' products and ten 'garden/seeds' products; 30 customers buy within one group, in order."""
    saws = [ProductFactory(sku=f"SAW-{i}", title=f"Saw model {i}", category_path="tools/saws") for i in range(10)]
    seeds = [ProductFactory(sku=f"SEED-{i}", title=f"Seed packet {i}", category_path="garden/seeds") for i in range(10)]
    customers = []
    for c in range(30):
        customer = CustomerFactory(external_id=f"c{c}")
        group = saws if c % 2 == 0 else seeds
        start = c % 5
        for step, product in enumerate(group[start : start + 6]):
            EventFactory(
                customer=customer,
                product=product,
                type=Event.Type.PURCHASE,
                timestamp=T0 + timedelta(days=c, minutes=step // 2),
                session=f"s{c}-{step // 2}",
            )
        customers.append(customer)
    return {"saws": saws, "seeds": seeds, "customers": customers}


def train_through_a_job(parameters: dict | None = None) -> TrainingJob:
    """Run the training job of ``manage.py train recommend --inline`` (the one path that trains)."""
    job = start_training_job(apps=["recommend"], parameters={**QUICK, **(parameters or {})}, enqueue=False)
    jobs.run_training_job(job_id=job.pk)
    job.refresh_from_db()
    return job


@pytest.fixture
def trained(shop, settings, tmp_path):
    """Train and activate a model on the shop's events (in this process, as the worker would)."""
    settings.MODELS_DIR = tmp_path / "models"
    services.reset_serving_cache()
    job = train_through_a_job()
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    services.reset_serving_cache()
    yield lifecycle.active(RecommenderModel)
    services.reset_serving_cache()
