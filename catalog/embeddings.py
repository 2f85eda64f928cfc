"""Product embeddings in pgvector, as an index the backbone fills on activation."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from catalog.models import Product, ProductEmbedding


class ProductIndex:
    """Embeddings of product text (title, brand, category, description), one row per version."""

    name = "catalog.products"

    def pending_ids(self, version_id: int, limit: int) -> list[int]:
        return list(
            Product.objects.exclude(embeddings__version_id=version_id)
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )

    def count(self, version_id: int) -> tuple[int, int]:
        return ProductEmbedding.objects.filter(version_id=version_id).count(), Product.objects.count()

    def texts(self, ids: list[int]) -> dict[int, str]:
        return {
            p.id: p.text
            for p in Product.objects.filter(id__in=ids).only("id", "title", "brand", "category_path", "description")
        }

    def store(self, version_id: int, vectors: dict[int, Any]) -> None:
        rows = [ProductEmbedding(product_id=pid, version_id=version_id, embedding=vec) for pid, vec in vectors.items()]
        with transaction.atomic():
            ProductEmbedding.objects.bulk_create(
                rows,
                update_conflicts=True,
                unique_fields=["product", "version"],
                update_fields=["embedding", "created_at"],
            )

    def prune(self, keep_version_ids: list[int]) -> None:
        ProductEmbedding.objects.exclude(version_id__in=keep_version_ids).delete()


product_index = ProductIndex()
