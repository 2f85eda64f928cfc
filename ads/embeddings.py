"""Ad creative embeddings stored per backbone version, so serving reads them instead of embedding.

:data:`ad_index` is registered with the backbone (``ads/apps.py``): activating a backbone version
embeds every creative with it before the version serves, like the product embeddings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db import transaction

from ads.models import Ad, AdEmbedding


class AdIndex:
    """The backbone embedding index of ad creatives (one ``AdEmbedding`` row per ad and version)."""

    name = "ads.creatives"

    def pending_ids(self, version_id: int, limit: int) -> list[int]:
        return list(
            Ad.objects.exclude(embeddings__version_id=version_id).order_by("id").values_list("id", flat=True)[:limit]
        )

    def count(self, version_id: int) -> tuple[int, int]:
        return AdEmbedding.objects.filter(version_id=version_id).count(), Ad.objects.count()

    def texts(self, ids: list[int]) -> dict[int, str]:
        return {ad.pk: ad.creative_text for ad in Ad.objects.filter(id__in=ids).only("id", "title", "text")}

    def store(self, version_id: int, vectors: dict[int, Any]) -> None:
        """Upsert embeddings of the ads' current creative texts (read here)."""
        texts = self.texts(list(vectors))
        store_vectors(version_id=version_id, vectors={i: (texts[i], v) for i, v in vectors.items() if i in texts})

    def prune(self, keep_version_ids: list[int]) -> None:
        AdEmbedding.objects.exclude(version_id__in=keep_version_ids).delete()


ad_index = AdIndex()


def store_vectors(*, version_id: int, vectors: dict[int, tuple[str, Any]]) -> None:
    """Upsert ``ad id -> (creative text, vector)`` for ``version_id`` (writes AdEmbedding rows)."""
    rows = [AdEmbedding(ad_id=i, version_id=version_id, text=t, embedding=v) for i, (t, v) in vectors.items()]
    with transaction.atomic():
        AdEmbedding.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["ad", "version"],
            update_fields=["text", "embedding", "created_at"],
        )


def creative_vectors(*, ads: list[Ad], version_id: int, encoder) -> np.ndarray:
    """(len(ads), dim) creative embeddings of ``version_id``: stored ones read in one query; missing
    or stale ones (the creative text changed) embedded with ``encoder`` and stored."""
    stored = {e.ad_id: e for e in AdEmbedding.objects.filter(version_id=version_id, ad_id__in=[ad.pk for ad in ads])}
    vectors = {
        ad.pk: np.asarray(stored[ad.pk].embedding, dtype=np.float32)
        for ad in ads
        if ad.pk in stored and stored[ad.pk].text == ad.creative_text
    }
    missing = [ad for ad in ads if ad.pk not in vectors]
    if missing:
        fresh = encoder.encode([ad.creative_text for ad in missing])
        store_vectors(version_id=version_id, vectors={ad.pk: (ad.creative_text, v) for ad, v in zip(missing, fresh)})
        vectors.update({ad.pk: np.asarray(v, dtype=np.float32) for ad, v in zip(missing, fresh)})
    if not ads:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.stack([vectors[ad.pk] for ad in ads])
