"""Training on the platform's own data: a big catalogue with few products bought, and the ranking
the API serves against the one ``evaluate recommend`` measures on the same data."""

from __future__ import annotations

import csv
import random
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse

from backbone.models import TrainingJob
from backbone.services import get_active_version
from catalog.models import Customer, Event, Product
from recommend import evaluation, ml, services, training
from recommend.models import RecommenderModel
from tests.recommend.conftest import QUICK, T0, train_through_a_job

pytestmark = pytest.mark.django_db


def test_a_catalogue_of_many_products_without_events_trains_on_the_products_with_events(settings, tmp_path):
    """20,000 products, 300 of them bought: the old dense item x item code needed 20,000² floats."""
    settings.MODELS_DIR = tmp_path / "models"
    Product.objects.bulk_create(Product(sku=f"P{i:05d}", title=f"Product {i}") for i in range(20000))
    bought = list(Product.objects.order_by("id"))[::66][:300]
    customers = Customer.objects.bulk_create(Customer(external_id=f"c{i}") for i in range(240))
    rng = random.Random(0)
    events = [
        Event(
            customer=c,
            product=p,
            type=Event.Type.PURCHASE,
            timestamp=T0 + timedelta(days=step),
            client_event_id=f"{n}-{step}",
        )
        for n, c in enumerate(customers)
        for step, p in enumerate(rng.sample(bought[(n % 3) * 100 : (n % 3 + 1) * 100], 8))
    ]
    Event.objects.bulk_create(events)
    row = training.fit(version=get_active_version(), parameters={"bags": 1})
    assert row.state == RecommenderModel.State.READY
    touched = {e.product_id for e in events}
    assert row.n_items == len(touched) and row.n_customers == 240
    served = ml.load_model(Path(row.path))
    assert served.n_items == len(touched)
    assert sum(len(items) for items, _ in served.hybrid.ease.blocks) <= len(touched)  # not 20,000 items
    size = sum(f.stat().st_size for f in Path(row.path).rglob("*") if f.is_file())
    assert size < 5_000_000, size


def write_retail(folder: Path, customers: int = 40, seed: int = 5) -> Path:
    """Online Retail files: customers buy 4 invoices of 2-4 items of their family; anonymous invoices too."""
    rng = random.Random(seed)
    header = ["row_id", "InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]
    rows, invoice = [], 500000
    for c in range(customers + 10):
        family = c % 3
        for basket in range(4 if c < customers else 1):
            invoice += 1
            when = f"2011-{basket + 1:02d}-{1 + (c * 7 + basket) % 27:02d} {8 + c % 9:02d}:00:00"
            for code in rng.sample([f"{family + 2}{i:04d}" for i in range(9)], rng.randint(2, 4)):
                customer = str(12000 + c) if c < customers else ""
                rows.append([len(rows), invoice, code, f"ITEM {code}", 2, when, "1.25", customer])
    folder.mkdir(parents=True)
    with open(folder / "transactions.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    codes = sorted({r[2] for r in rows})
    with open(folder / "items.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["StockCode", "Description"], *[[c, f"ITEM {c}"] for c in codes]])
    return folder


def test_the_api_serves_the_ranking_that_evaluate_measures(storefront_client, settings, tmp_path):
    source = write_retail(tmp_path / "or")
    split = tmp_path / "split"
    call_command("split_dataset", "online_retail", "--data-dir", str(source), "--out", str(split))
    call_command("import_dataset", "online_retail", "--data-dir", str(split / "train"), "--no-progress")
    settings.MODELS_DIR = tmp_path / "models"
    services.reset_serving_cache()
    assert train_through_a_job().status == TrainingJob.Status.SUCCEEDED

    data = evaluation.build("online_retail", split / "train", split / "test", embed=None)
    model = ml.fit_recommender(data.train, QUICK)  # what evaluate recommend trains and measures
    histories = data.histories[:6]
    scores = ml.rank_scores(model, histories, [h.items for h in histories])
    assert len(model.boosters) == QUICK["bags"]
    for user, row in zip(data.users[:6], scores):
        expected = ["or-" + data.train.items[i] for i in np.argsort(-row, kind="stable")[:8]]
        response = storefront_client.get(reverse("recommend-customer", args=[f"or-{user}"]), {"k": 8})
        body = response.json()
        assert body["fallback"] is None
        assert [item["sku"] for item in body["items"]] == expected, user
