"""Training jobs, model versions and activation, through the services (real database)."""

from __future__ import annotations

from io import StringIO

import pytest

from backbone import services
from backbone.models import ModelVersion
from backbone.onnx_encoder import OnnxEncoder
from catalog.models import ProductEmbedding
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_fresh_install_serves_the_packaged_base_version():
    version = services.get_active_version()
    assert version.name == services.BASE_VERSION_NAME
    assert version.state == ModelVersion.State.ACTIVE
    assert services.ensure_base_version().pk == version.pk  # idempotent


def test_serving_encoder_is_the_exported_onnx_copy_loaded_once(tiny_active_version, settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    version, encoder = services.active_encoder()
    same_version, serving = services.active_serving_encoder()
    assert same_version == version and isinstance(serving, OnnxEncoder)
    assert serving.path.parent == tmp_path / "onnx" and serving.path.name.startswith(version.name)
    assert services.active_serving_encoder()[1] is serving, "loaded once, not per request"
    assert (serving.encode(["red paint"]) @ encoder.encode(["red paint"]).T).item() > 0.9999

    exported = serving.path.stat().st_mtime_ns
    services.reset_caches()  # a new process: loads the file, does not export it again
    assert services.active_serving_encoder()[1] is not serving
    assert serving.path.stat().st_mtime_ns == exported

    settings.BACKBONE_ONNX_SERVING = False
    assert services.serving_encoder(version) is services.version_encoder(version)


def test_activation_switches_only_when_every_product_is_embedded(tiny_active_version, tiny_model_dir):
    products = ProductFactory.create_batch(5)
    services.embed_version(version_id=tiny_active_version.pk)
    assert ProductEmbedding.objects.filter(version=tiny_active_version).count() == 5
    new = ModelVersion.objects.create(name="new", path=str(tiny_model_dir), state=ModelVersion.State.READY)
    services.activate_version(version_id=new.pk)
    new.refresh_from_db()
    assert new.state == ModelVersion.State.ACTIVATING
    assert services.get_active_version().pk == tiny_active_version.pk  # old one serves meanwhile

    # Fill part of the index, as if the worker were half-way: still not switched.
    from catalog.embeddings import product_index

    encoder = services.load_encoder(new)
    ids = [p.pk for p in products[:2]]
    product_index.store(new.pk, dict(zip(ids, encoder.encode([p.text for p in products[:2]]))))
    assert services.get_active_version().pk == tiny_active_version.pk

    services.embed_version(version_id=new.pk)
    new.refresh_from_db()
    assert new.state == ModelVersion.State.ACTIVE and new.activation_progress == 1.0
    assert ProductEmbedding.objects.filter(version=new).count() == 5
    assert ModelVersion.objects.get(pk=tiny_active_version.pk).state == ModelVersion.State.RETIRED
    services.embed_version(version_id=new.pk)  # run it twice: nothing doubles
    assert ProductEmbedding.objects.filter(version=new).count() == 5


def test_new_product_is_embedded_with_the_active_version(tiny_active_version):
    from catalog.services import embed_products

    product = ProductFactory(title="Cordless drill")
    assert embed_products(product_ids=[product.pk]) == 1
    assert embed_products(product_ids=[product.pk]) == 1  # upsert, not a second row
    assert ProductEmbedding.objects.filter(product=product, version=tiny_active_version).count() == 1


def test_product_written_during_an_activation_gets_both_versions(tiny_active_version, tiny_model_dir):
    from catalog.services import embed_products

    new = ModelVersion.objects.create(name="next", path=str(tiny_model_dir), state=ModelVersion.State.ACTIVATING)
    product = ProductFactory(title="Brand-new hammer")
    embed_products(product_ids=[product.pk])
    assert set(ProductEmbedding.objects.filter(product=product).values_list("version_id", flat=True)) == {
        tiny_active_version.pk,
        new.pk,
    }


@pytest.mark.django_db(transaction=True)
def test_one_at_a_time_makes_a_second_holder_wait_for_the_first():
    import threading
    import time

    from django.db import connection

    from backbone.queue import one_at_a_time

    order: list[str] = []
    first_holds = threading.Event()

    def second() -> None:
        first_holds.wait(10)
        with one_at_a_time("test.lock"):  # another thread: its own database connection
            order.append("second in")
        connection.close()

    thread = threading.Thread(target=second)
    thread.start()
    with one_at_a_time("test.lock"):
        first_holds.set()
        time.sleep(0.5)
        order.append("first out")
    thread.join(10)
    assert order == ["first out", "second in"]
    with one_at_a_time("test.lock"):  # released: taken again at once
        pass


def test_bootstrap_exports_the_active_versions_serving_encoder_so_web_processes_only_load_it(settings, tmp_path):
    from django.core.management import call_command

    settings.MODELS_DIR = tmp_path
    call_command("bootstrap_platform", admin_password="pw-admin-123", stdout=StringIO())
    exported = list((tmp_path / "onnx").iterdir())
    assert [p.name.split("-")[0] for p in exported] == [services.BASE_VERSION_NAME]
    assert services.active_serving_encoder()[1].path == exported[0]
