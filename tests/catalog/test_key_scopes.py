"""Key scopes: a public key is safe in a browser, a server key does what only the shop's back end may."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from catalog.models import Event, StorefrontKey
from tests.factories import CustomerFactory, EventFactory, ProductFactory

pytestmark = pytest.mark.django_db

PUBLIC_READS = [
    "/api/v1/products",
    "/api/v1/products/P1",
    "/api/v1/search?q=drill",
    "/api/v1/search/suggest?q=dri",
    "/api/v1/recommend/products/P1/similar",
    "/api/v1/recommend/products/P1/bought-together",
    "/api/v1/recommend/popular",
]


@pytest.fixture
def history():
    product = ProductFactory(sku="P1", title="Cordless drill")
    EventFactory(customer=CustomerFactory(external_id="alice"), product=product, type=Event.Type.PURCHASE)
    return product


@pytest.mark.parametrize("path", PUBLIC_READS)
def test_a_public_key_reads_what_a_browser_needs(public_client, history, path):
    assert public_client.get(path).status_code == 200


def test_a_public_key_can_neither_send_events_nor_read_a_customers_recommendations(public_client, history):
    event = {"client_event_id": "e1", "customer": "alice", "product": "P1", "type": "view",
             "timestamp": "2026-11-28T10:00:00Z"}  # fmt: skip
    sent = public_client.post("/api/v1/events", {"events": [event]}, format="json")
    assert sent.status_code == 403
    assert "server-scope key" in sent.json()["detail"]
    assert Event.objects.count() == 1
    assert public_client.get("/api/v1/recommend/customers/alice").status_code == 403


def test_a_server_key_does_both(storefront_client, history):
    assert storefront_client.get("/api/v1/recommend/customers/alice").status_code == 200
    assert storefront_client.get("/api/v1/search?q=drill").status_code == 200


def test_neither_key_reaches_staff_operations(public_client, storefront_client):
    for client in (public_client, storefront_client):
        assert client.get("/api/v1/training-jobs").status_code == 403


def test_bootstrap_prints_a_server_and_a_public_key_once():
    out = StringIO()
    call_command("bootstrap_platform", admin_password="pw-admin-123", stdout=out)
    first = json.loads(out.getvalue())
    assert first["storefront_key"].startswith("sk_") and first["public_key"].startswith("pk_")
    scopes = dict(StorefrontKey.objects.values_list("prefix", "scope"))
    assert scopes == {first["storefront_key"][:10]: "server", first["public_key"][:10]: "public"}
    again = StringIO()
    call_command("bootstrap_platform", stdout=again)
    assert "public_key" not in json.loads(again.getvalue())
