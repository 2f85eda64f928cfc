"""Catalogue API: permissions, product CRUD, event ingestion (idempotent, all-or-nothing)."""

from __future__ import annotations

import json

import pytest

from catalog.models import Customer, Event, Product
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def event(i: int, sku: str, **overrides) -> dict:
    return {
        "client_event_id": f"e-{i}",
        "customer": f"c-{i % 7}",
        "product": sku,
        "type": "view",
        "timestamp": "2026-11-28T10:00:00Z",
        **overrides,
    }


def test_anonymous_cannot_list_products(api_client):
    assert api_client.get("/api/v1/products").status_code in (401, 403)


def test_storefront_reads_products_but_cannot_write(storefront_client):
    ProductFactory(sku="A1")
    listing = storefront_client.get("/api/v1/products")
    assert listing.status_code == 200
    assert listing.json()["results"][0]["sku"] == "A1"
    assert storefront_client.post("/api/v1/products", {"sku": "B", "title": "x"}, format="json").status_code == 403
    assert not Product.objects.filter(sku="B").exists()


def test_staff_creates_updates_and_deletes_a_product(staff_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        created = staff_client.post(
            "/api/v1/products",
            {"sku": "DRILL-1", "title": "Cordless drill", "category_path": " tools / drills ", "price": "59.00"},
            format="json",
        )
    assert created.status_code == 201, created.json()
    assert created.json()["category_path"] == "tools/drills"
    assert len(callbacks) == 1  # the embedding task is enqueued on commit
    assert staff_client.patch("/api/v1/products/DRILL-1", {"in_stock": False}, format="json").status_code == 200
    assert Product.objects.get(sku="DRILL-1").in_stock is False
    assert staff_client.delete("/api/v1/products/DRILL-1").status_code == 204


def test_invalid_product_gets_field_messages(staff_client):
    response = staff_client.post("/api/v1/products", {"sku": "", "price": "-3"}, format="json")
    assert response.status_code == 400
    assert {"sku", "title", "price"} <= set(response.json())
    assert Product.objects.count() == 0


def test_a_batch_of_1000_events_is_stored_once(storefront_client):
    skus = [p.sku for p in ProductFactory.create_batch(20)]
    batch = [event(i, skus[i % 20]) for i in range(1000)]
    first = storefront_client.post("/api/v1/events", {"events": batch}, format="json")
    assert first.status_code == 201, first.content[:500]
    assert first.json() == {"received": 1000, "created": 1000, "duplicates": 0}
    again = storefront_client.post("/api/v1/events", {"events": batch[:10] + [event(5000, skus[0])]}, format="json")
    assert again.json() == {"received": 11, "created": 1, "duplicates": 10}
    assert Event.objects.count() == 1001
    assert Customer.objects.count() == 7


def test_duplicates_inside_one_batch_count_once(storefront_client):
    sku = ProductFactory().sku
    response = storefront_client.post("/api/v1/events", {"events": [event(1, sku), event(1, sku)]}, format="json")
    assert response.json()["created"] == 1
    assert Event.objects.count() == 1


def test_a_batch_with_one_bad_event_writes_nothing(storefront_client):
    sku = ProductFactory().sku
    batch = [event(1, sku), event(2, "NO-SUCH-SKU"), event(3, sku, type="teleport")]
    response = storefront_client.post("/api/v1/events", {"events": batch}, format="json")
    assert response.status_code == 400
    errors = response.json()["events"]
    assert "type" in errors["2"]
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timestamp", "9999-12-31T23:59:59-10:00"),  # year 10000 in UTC
        ("timestamp", "0001-01-01T00:00:00+14:00"),  # BC in UTC
        ("timestamp", "1999-12-31T23:59:59Z"),
        ("timestamp", "2999-01-01T00:00:00Z"),
        ("client_event_id", "a\u0000b"),
        ("session", "\u0000"),
        ("customer", "c\u0000"),
        ("client_event_id", "x\ud800"),
    ],
)
def test_an_event_out_of_the_time_window_or_with_nul_or_surrogates_is_a_400(storefront_client, field, value):
    sku = ProductFactory().sku
    bad = {**event(2, sku), field: value}
    body = json.dumps({"events": [event(1, sku), bad]})  # ASCII: "\\ud800" travels as its JSON escape
    response = storefront_client.post("/api/v1/events", body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert field in response.json()["events"]["1"]
    assert Event.objects.count() == 0


@pytest.mark.parametrize(
    "path", ["/api/v1/events", "/api/v1/chat/messages", "/api/v1/ads/select", "/api/v1/search/clicks"]
)
def test_json_nested_thousands_deep_is_a_400(storefront_client, path):
    body = "[" * 5000 + "]" * 5000
    response = storefront_client.post(path, body, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


def test_unknown_sku_is_a_404_naming_the_event_and_stores_none_of_the_batch(storefront_client):
    sku = ProductFactory().sku
    response = storefront_client.post("/api/v1/events", {"events": [event(1, sku), event(2, "GHOST")]}, format="json")
    assert response.status_code == 404
    assert "GHOST" in str(response.json()["events"]["1"]["product"])
    assert not Event.objects.exists()


def test_invalid_api_key_is_rejected(api_client):
    api_client.credentials(HTTP_X_API_KEY="sk_wrong")
    assert api_client.get("/api/v1/products").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_concurrent_clients_sending_overlapping_batches_twice_store_each_event_once():
    """8 clients x 5 batches x 200 events, a fifth of the ids shared between clients, every batch sent twice."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection
    from rest_framework.test import APIClient

    from catalog.services import create_storefront_key

    skus = [p.sku for p in ProductFactory.create_batch(10)]
    _, raw = create_storefront_key(name="concurrent")

    def batch(client_no: int, batch_no: int) -> list[dict]:
        ids = [f"c{client_no}-b{batch_no}-{i}" for i in range(160)] + [f"shared-b{batch_no}-{i}" for i in range(40)]
        return [event(0, skus[i % 10], client_event_id=cid, customer=f"cust-{i % 13}") for i, cid in enumerate(ids)]

    def send(client_no: int) -> list[int]:
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=raw)
        statuses = []
        try:
            for batch_no in range(5):
                for _ in range(2):
                    body = {"events": batch(client_no, batch_no)}
                    statuses.append(client.post("/api/v1/events", body, format="json").status_code)
        finally:
            connection.close()
        return statuses

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for result in pool.map(send, range(8)) for s in result]
    assert set(statuses) == {201}
    expected = {cid for c in range(8) for b in range(5) for cid in (e["client_event_id"] for e in batch(c, b))}
    assert len(expected) == 8 * 5 * 160 + 5 * 40
    assert Event.objects.count() == len(expected)
    assert set(Event.objects.values_list("client_event_id", flat=True)) == expected
    assert Customer.objects.count() == 13
