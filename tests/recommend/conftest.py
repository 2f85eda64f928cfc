"""Fixtures of the recommend tests: a small shop with two taste groups and a trained model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from catalog.models import Event
from recommend import services
from tests.factories import CustomerFactory, EventFactory, ProductFactory

T0 = datetime(2024, 1, 1, tzinfo=UTC)


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
                timestamp=T0 + timedelta(days=c, minutes=step),
                session=f"s{c}-{step // 2}",
            )
        customers.append(customer)
    return {"saws": saws, "seeds": seeds, "customers": customers}


@pytest.fixture
def trained(shop, django_capture_on_commit_callbacks):
    """Train and activate a model on the shop's events (synchronously, like the worker would)."""
    reset_serving_cache()
    with django_capture_on_commit_callbacks(execute=False):
        row = services.start_training(parameters={"holdout_customers": 10})
    services.train_model(model_id=row.pk)
    reset_serving_cache()
    row.refresh_from_db()
    assert row.state == row.State.ACTIVE, row.error
    yield row
    reset_serving_cache()


def reset_serving_cache() -> None:
    """Forget the process's loaded model and cached policies (each test has its own database rows)."""
    services._CACHE.clear()
    services._CACHE.update(model_id=None, served=None, checked_at=0.0)
