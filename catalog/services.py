"""Catalogue operations: API keys, product writes, event ingestion."""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction

from backbone.queue import enqueue_on_commit
from catalog.models import Customer, Event, Product, StorefrontKey, hash_key

logger = logging.getLogger(__name__)


def create_storefront_key(*, name: str, scope: str = StorefrontKey.Scope.SERVER) -> tuple[StorefrontKey, str]:
    """Create an API key of ``scope``; return the row and the raw key (shown once, stored only hashed)."""
    raw = StorefrontKey.generate_raw_key(scope)
    key = StorefrontKey.objects.create(name=name, scope=scope, prefix=raw[:10], key_hash=hash_key(raw))
    return key, raw


def schedule_product_embeddings(*, product_ids: list[int]) -> None:
    """Embed these products with the serving (and any activating) version after commit.

    Call inside the transaction that wrote the products.
    """
    if product_ids:
        enqueue_on_commit("catalog.embed_products", list(product_ids))


def embed_products(*, product_ids: list[int]) -> int:
    """Compute (or refresh) the embeddings of products for the active and any activating version."""
    from backbone.services import serving_encoders
    from catalog.embeddings import product_index

    texts = product_index.texts(product_ids)
    if not texts:
        return 0
    ids = list(texts)
    for version, encoder in serving_encoders():
        vectors = encoder.encode([texts[i] for i in ids])
        product_index.store(version.pk, dict(zip(ids, vectors)))
    return len(ids)


def ingest_events(*, events: list[dict[str, Any]]) -> dict[str, int]:
    """Store a batch of behaviour events; events whose ``client_event_id`` is known are skipped.

    ``events`` are validated dicts with ``customer`` (external id or None), ``product_id``,
    ``type``, ``value``, ``timestamp``, ``session``, ``client_event_id`` and optionally ``rec_id``. Runs in one transaction:
    all of the batch is stored or none. Returns counts.

    Three statements whatever the batch size: customers are upserted (``ON CONFLICT DO NOTHING``)
    and read back, then every event goes in one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT
    (client_event_id) DO NOTHING RETURNING``; the returned rows are exactly the new ones, so a
    concurrent request ingesting the same ids is never double counted. (The ORM's ``bulk_create``
    spent most of a 1,000-event request building model instances and SQL parameters.)
    """
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        unique.setdefault(event["client_event_id"], event)
    fresh = list(unique.values())
    customer_table, event_table = Customer._meta.db_table, Event._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        external_ids = sorted({e["customer"] for e in fresh if e.get("customer")})
        customers: dict[str, int] = {}
        if external_ids:
            cursor.execute(
                f"INSERT INTO {customer_table} (external_id, attributes, created_at) "
                "SELECT x, '{}'::jsonb, now() FROM unnest(%s::text[]) AS x ON CONFLICT (external_id) DO NOTHING",
                [external_ids],
            )
            cursor.execute(
                f"SELECT external_id, id FROM {customer_table} WHERE external_id = ANY(%s::text[])", [external_ids]
            )
            customers = dict(cursor.fetchall())
        cursor.execute(
            f"INSERT INTO {event_table} "
            "(customer_id, product_id, type, value, timestamp, session, client_event_id, rec_id, created_at) "
            "SELECT c, p, t, v, ts, s, cid, r, now() FROM unnest(%s::bigint[], %s::bigint[], %s::text[], "
            "%s::float8[], %s::timestamptz[], %s::text[], %s::text[], %s::text[]"
            ") AS e(c, p, t, v, ts, s, cid, r) ON CONFLICT (client_event_id) DO NOTHING RETURNING 1",
            [
                [customers.get(e["customer"]) if e.get("customer") else None for e in fresh],
                [e["product_id"] for e in fresh],
                [e["type"] for e in fresh],
                [float(e.get("value", 1.0)) for e in fresh],
                [e["timestamp"] for e in fresh],
                [e.get("session") or "" for e in fresh],
                [e["client_event_id"] for e in fresh],
                [e.get("rec_id") or "" for e in fresh],
            ],
        )
        created = len(cursor.fetchall())
    return {"received": len(events), "created": created, "duplicates": len(events) - created}


def product_ids_by_sku(skus: list[str]) -> dict[str, int]:
    """Return the ids of the products with these SKUs, keyed by SKU (one query)."""
    return dict(Product.objects.filter(sku__in=list(set(skus))).values_list("sku", "id"))


def products_by_sku(skus: list[str]) -> dict[str, Product]:
    """Return the products with these SKUs, keyed by SKU."""
    return {p.sku: p for p in Product.objects.filter(sku__in=set(skus))}
