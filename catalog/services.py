"""Catalogue operations: API keys, product writes, event ingestion."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from catalog.models import Customer, Event, Product, StorefrontKey, hash_key

logger = logging.getLogger(__name__)


def create_storefront_key(*, name: str) -> tuple[StorefrontKey, str]:
    """Create an API key; return the row and the raw key (shown once, stored only hashed)."""
    raw = StorefrontKey.generate_raw_key()
    key = StorefrontKey.objects.create(name=name, prefix=raw[:10], key_hash=hash_key(raw))
    return key, raw


def schedule_product_embeddings(*, product_ids: list[int]) -> None:
    """Embed these products with the serving (and any activating) version after commit.

    Call inside the transaction that wrote the products.
    """
    if not product_ids:
        return
    from catalog.tasks import embed_products

    ids = list(product_ids)
    transaction.on_commit(lambda: embed_products.delay(ids))


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

    ``events`` are validated dicts with ``customer`` (external id or None), ``product``
    (Product), ``type``, ``value``, ``timestamp``, ``session``, ``client_event_id``.
    Runs in one transaction: all of the batch is stored or none. Returns counts.
    """
    unique: dict[str, dict[str, Any]] = {}
    for event in events:
        unique.setdefault(event["client_event_id"], event)
    with transaction.atomic():
        known = set(Event.objects.filter(client_event_id__in=list(unique)).values_list("client_event_id", flat=True))
        fresh = [e for cid, e in unique.items() if cid not in known]
        external_ids = {e["customer"] for e in fresh if e.get("customer")}
        Customer.objects.bulk_create([Customer(external_id=x) for x in external_ids], ignore_conflicts=True)
        customers = dict(Customer.objects.filter(external_id__in=external_ids).values_list("external_id", "id"))
        rows = [
            Event(
                customer_id=customers.get(e.get("customer")) if e.get("customer") else None,
                product=e["product"],
                type=e["type"],
                value=e.get("value", 1.0),
                timestamp=e["timestamp"],
                session=e.get("session") or "",
                client_event_id=e["client_event_id"],
            )
            for e in fresh
        ]
        # ignore_conflicts covers a concurrent request ingesting the same ids meanwhile.
        Event.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)
    return {"received": len(events), "created": len(rows), "duplicates": len(events) - len(rows)}


def products_by_sku(skus: list[str]) -> dict[str, Product]:
    """Return the products with these SKUs, keyed by SKU."""
    return {p.sku: p for p in Product.objects.filter(sku__in=set(skus))}
