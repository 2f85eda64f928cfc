"""Celery tasks of the catalogue."""

from __future__ import annotations

from celery import shared_task

from catalog import services


@shared_task(name="catalog.embed_products")
def embed_products(product_ids: list[int]) -> int:
    return services.embed_products(product_ids=product_ids)
