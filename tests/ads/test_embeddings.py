"""Creative embeddings stored per backbone version: filled on activation, read (not recomputed) when serving."""

from __future__ import annotations

import numpy as np
import pytest

from ads import services
from ads.models import AdEmbedding
from backbone import services as backbone
from backbone.models import ModelVersion
from tests.ads.conftest import AdFactory

pytestmark = pytest.mark.django_db


def test_activating_a_backbone_version_embeds_every_creative_before_it_serves(tiny_active_version, tiny_model_dir):
    ads = AdFactory.create_batch(3)
    new = ModelVersion.objects.create(name="new", path=str(tiny_model_dir), state=ModelVersion.State.READY)

    backbone.activate_version(version_id=new.pk)
    assert backbone.get_active_version().pk == tiny_active_version.pk
    backbone.embed_version(version_id=new.pk)

    new.refresh_from_db()
    assert new.state == ModelVersion.State.ACTIVE
    stored = AdEmbedding.objects.filter(version=new).order_by("ad_id")
    assert [(e.ad_id, e.text) for e in stored] == [(ad.pk, ad.creative_text) for ad in ads]
    expected = backbone.load_encoder(new).encode([ad.creative_text for ad in ads])
    np.testing.assert_allclose(np.stack([np.asarray(e.embedding) for e in stored]), expected, atol=1e-5)


def test_serving_reads_stored_creatives_and_re_embeds_a_changed_one(tiny_active_version):
    first, second = AdFactory.create_batch(2)

    serving = {"backbone": tiny_active_version, "encoder": backbone.version_encoder(tiny_active_version)}
    vectors = services.ad_text_vectors([first, second], **serving)  # nothing stored yet: embedded and stored
    assert AdEmbedding.objects.filter(version=tiny_active_version).count() == 2

    # a fresh worker reads the stored row: plant a marker vector to see that it is not recomputed
    marker = np.zeros(384, dtype=np.float32)
    marker[0] = 1.0
    AdEmbedding.objects.filter(ad=first).update(embedding=marker)
    second.title = "A completely different creative"
    second.save()
    services.SCORER.reset()

    again = services.ad_text_vectors([first, second], **serving)

    np.testing.assert_allclose(again[0], marker)
    assert not np.allclose(again[1], vectors[1])  # its text changed: embedded anew
    row = AdEmbedding.objects.get(ad=second, version=tiny_active_version)
    assert row.text == second.creative_text
    np.testing.assert_allclose(np.asarray(row.embedding), again[1], atol=1e-6)
    assert AdEmbedding.objects.count() == 2
