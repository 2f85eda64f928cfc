"""The recommendation API on the real PostgreSQL: personalised, real-time, cold start, bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from backbone.models import TrainingJob
from catalog.models import Event, Product
from recommend import services, training
from recommend.models import RecommenderModel, RepeatPolicy
from tests.factories import EventFactory, ProductFactory
from tests.recommend.conftest import T0, train_through_a_job

pytestmark = pytest.mark.django_db


def for_you(client, customer: str, **params):
    return client.get(reverse("recommend-customer", args=[customer]), params)


def skus(response) -> list[str]:
    return [item["sku"] for item in response.json()["items"]]


def test_for_you_recommends_the_customers_own_taste_with_reasons(storefront_client, trained):
    response = for_you(storefront_client, "c0", k=4)  # c0 bought SAW-0..5: four saws are left
    assert response.status_code == 200
    body = response.json()
    assert body["fallback"] is None and len(body["items"]) == 4
    assert all(sku.startswith("SAW-") for sku in skus(response))
    assert any(item["reason"].startswith("because you bought") for item in body["items"])


def test_already_bought_and_out_of_stock_items_are_excluded(storefront_client, trained, shop):
    bought = {e.product.sku for e in Event.objects.filter(customer__external_id="c0").select_related("product")}
    Product.objects.filter(sku="SAW-7").update(in_stock=False)
    result = skus(for_you(storefront_client, "c0", k=20))
    assert not bought & set(result)
    assert "SAW-7" not in result


def test_a_repeat_policy_lets_bought_items_come_back(storefront_client, trained):
    bought = {e.product.sku for e in Event.objects.filter(customer__external_id="c0").select_related("product")}
    RepeatPolicy.objects.create(category_path="tools", allow_repeats=True)
    assert bought & set(skus(for_you(storefront_client, "c0", k=20)))


def test_new_events_change_the_next_answer_without_a_retrain(storefront_client, trained):
    before = for_you(storefront_client, "c1", k=5).json()["items"]
    events = [
        {
            "client_event_id": f"live-{i}",
            "customer": "c1",
            "product": f"SAW-{i}",
            "type": "view",
            "timestamp": (T0 + timedelta(days=400, minutes=i)).isoformat(),
        }
        for i in range(4)
    ]
    assert storefront_client.post(reverse("event-ingest"), {"events": events}, format="json").status_code == 201
    after = for_you(storefront_client, "c1", k=5).json()["items"]
    assert after != before
    assert any(item["sku"].startswith("SAW-") and "because you viewed Saw" in item["reason"] for item in after)
    assert RecommenderModel.objects.count() == 1


def test_unknown_customer_gets_popular_items_as_a_documented_fallback(storefront_client, trained):
    body = for_you(storefront_client, "nobody-yet", k=3).json()
    assert body["fallback"] == "unknown_customer"
    assert len(body["items"]) == 3 and all(item["source"] == "popular" for item in body["items"])


def test_category_filter_keeps_to_the_category(storefront_client, trained):
    result = for_you(storefront_client, "c0", k=5, category="garden")
    assert result.status_code == 200
    assert result.json()["items"] and all(sku.startswith("SEED-") for sku in skus(result))


@pytest.mark.parametrize("k", ["0", "10000", "-1", "ten"])
def test_a_bad_k_is_a_400_with_a_field_message(storefront_client, trained, k):
    response = for_you(storefront_client, "c0", k=k)
    assert response.status_code == 400 and "k" in response.json()


def test_without_a_key_the_api_refuses(api_client, trained):
    assert for_you(api_client, "c0").status_code in (401, 403)


def test_similar_and_bought_together(storefront_client, trained):
    similar = storefront_client.get(reverse("recommend-similar", args=["SAW-2"]), {"k": 4})
    together = storefront_client.get(reverse("recommend-bought-together", args=["SAW-2"]), {"k": 4})
    assert similar.status_code == together.status_code == 200
    assert all(sku.startswith("SAW-") and sku != "SAW-2" for sku in skus(similar))
    assert all(sku.startswith("SAW-") for sku in skus(together))
    assert together.json()["items"][0]["reason"].startswith("often bought with")


def test_unknown_product_is_a_404(storefront_client, trained):
    assert storefront_client.get(reverse("recommend-similar", args=["NOPE"])).status_code == 404


def test_a_new_product_is_recommendable_at_once_through_its_text(storefront_client, trained, tiny_active_version):
    from backbone.services import embed_version

    embed_version(version_id=tiny_active_version.pk)
    fresh = ProductFactory(sku="SAW-NEW", title="Saw model 2", category_path="tools/saws")
    from catalog.services import embed_products

    embed_products(product_ids=[fresh.pk])
    response = storefront_client.get(reverse("recommend-similar", args=["SAW-NEW"]), {"k": 3})
    assert response.status_code == 200
    assert response.json()["items"] and all(i["reason"] == "similar to Saw model 2" for i in response.json()["items"])


def test_popular_endpoint_without_any_model(storefront_client, shop):
    response = storefront_client.get(reverse("recommend-popular"), {"k": 3})
    assert response.status_code == 200 and len(response.json()["items"]) == 3


def test_malformed_and_duplicate_events_are_never_double_counted(storefront_client, trained):
    url = reverse("event-ingest")
    event = {
        "client_event_id": "dup-1",
        "customer": "c0",
        "product": "SAW-1",
        "type": "view",
        "timestamp": "2024-06-01T00:00:00Z",
    }
    assert storefront_client.post(url, {"events": [event, event]}, format="json").json()["created"] == 1
    assert storefront_client.post(url, {"events": [event]}, format="json").json()["duplicates"] == 1
    assert storefront_client.post(url, {"events": [{**event, "type": "teleport"}]}, format="json").status_code == 400
    assert Event.objects.filter(client_event_id="dup-1").count() == 1
    assert for_you(storefront_client, "c0").status_code == 200


def test_a_1000_event_batch_takes_a_few_queries_counts_once_and_is_reflected_at_once(
    storefront_client, trained, django_assert_max_num_queries
):
    """Ingestion does a fixed number of statements whatever the batch size (auth, SKUs, customers, events)."""
    events = [
        {
            "client_event_id": f"bulk-{i}",
            "customer": "bulk-new" if i < 10 else f"bulk-other-{i % 40}",
            "product": f"SEED-{i % 10}" if i < 10 else f"SAW-{i % 10}",
            "type": "view",
            "timestamp": (T0 + timedelta(days=500, seconds=i)).isoformat(),
        }
        for i in range(1000)
    ]
    url = reverse("event-ingest")
    with django_assert_max_num_queries(8):
        first = storefront_client.post(url, {"events": events}, format="json")
    assert first.status_code == 201 and first.json() == {"received": 1000, "created": 1000, "duplicates": 0}
    again = storefront_client.post(
        url, {"events": events[:500] + [{**events[0], "client_event_id": "bulk-x"}]}, format="json"
    )
    assert again.json() == {"received": 501, "created": 1, "duplicates": 500}
    assert Event.objects.filter(client_event_id__startswith="bulk-").count() == 1001
    body = for_you(storefront_client, "bulk-new", k=5).json()
    assert body["fallback"] is None
    assert any(item["reason"].startswith("because you viewed Seed") for item in body["items"])


def test_each_malformed_event_is_named_by_position_and_nothing_is_stored(storefront_client, trained):
    good = {
        "client_event_id": "m-0",
        "customer": "c0",
        "product": "SAW-1",
        "type": "view",
        "timestamp": "2024-06-01T00:00:00Z",
    }
    batch = [
        good,
        {**good, "client_event_id": "m-1", "timestamp": "yesterday"},
        {**good, "client_event_id": "m-2", "value": "lots"},
        {**good, "client_event_id": "m-3", "customer": "x" * 200},
        "not an event",
        {k: v for k, v in good.items() if k != "product"} | {"client_event_id": "m-5"},
        {**good, "client_event_id": ""},
    ]
    response = storefront_client.post(reverse("event-ingest"), {"events": batch}, format="json")
    assert response.status_code == 400
    errors = response.json()["events"]
    assert set(errors) == {"1", "2", "3", "4", "5", "6"}
    assert "timestamp" in errors["1"] and "value" in errors["2"] and "customer" in errors["3"]
    assert "product" in errors["5"] and "client_event_id" in errors["6"]
    assert not Event.objects.filter(client_event_id__startswith="m-").exists()
    naive = {**good, "client_event_id": "m-naive", "timestamp": "2024-06-01T10:00:00", "value": "2.5"}
    assert storefront_client.post(reverse("event-ingest"), {"events": [naive]}, format="json").status_code == 201
    stored = Event.objects.get(client_event_id="m-naive")
    assert stored.value == 2.5 and stored.timestamp.utcoffset() is not None


def test_staff_list_models_and_start_a_training_job_through_the_api(
    staff_client, trained, django_capture_on_commit_callbacks
):
    listed = staff_client.get(reverse("recommend-models"))
    assert listed.status_code == 200
    assert [row["name"] for row in listed.json()["results"]] == [trained.name]
    assert listed.json()["results"][0]["state"] == "active" and listed.json()["results"][0]["n_items"] == 20
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(reverse("recommend-models"), {"parameters": {"w_pop": 0.2}}, format="json")
    assert response.status_code == 202 and len(callbacks) == 1
    job = TrainingJob.objects.get(pk=response.json()["id"])
    assert job.parameters["apps"] == ["recommend"] and job.parameters["w_pop"] == 0.2
    bad = staff_client.post(reverse("recommend-models"), {"parameters": {"nope": 1}}, format="json")
    assert bad.status_code == 400


def test_storefront_keys_cannot_list_or_train_models(storefront_client, shop):
    assert storefront_client.get(reverse("recommend-models")).status_code in (401, 403)
    assert storefront_client.post(reverse("recommend-models"), {}, format="json").status_code in (401, 403)


def test_every_customer_with_history_gets_a_personalised_answer(storefront_client, trained, shop):
    answers = [for_you(storefront_client, c.external_id, k=4).json() for c in shop["customers"]]
    assert all(a["fallback"] is None and len(a["items"]) == 4 for a in answers)
    assert all(item["source"] == "model" for a in answers for item in a["items"])


def test_bought_together_comes_from_shared_baskets_not_from_similar_titles(storefront_client, shop, settings, tmp_path):
    look_alike = ProductFactory(sku="SAW-2B", title="Saw model 2", category_path="tools/saws")
    buyer = shop["customers"][1]  # a seed customer buys the look-alike on its own
    EventFactory(customer=buyer, product=look_alike, type=Event.Type.PURCHASE, timestamp=T0 + timedelta(days=90))
    settings.MODELS_DIR = tmp_path / "models"
    assert train_through_a_job().status == TrainingJob.Status.SUCCEEDED
    services.reset_serving_cache()
    baskets: dict = {}  # (customer, time) -> SKUs
    for customer, sku, when in Event.objects.values_list("customer_id", "product__sku", "timestamp"):
        baskets.setdefault((customer, when), set()).add(sku)
    with_saw_2 = set().union(*(b for b in baskets.values() if "SAW-2" in b)) - {"SAW-2"}
    together = skus(storefront_client.get(reverse("recommend-bought-together", args=["SAW-2"]), {"k": 10}))
    assert together and set(together) <= with_saw_2
    assert "SAW-2B" not in together
    similar = skus(storefront_client.get(reverse("recommend-similar", args=["SAW-2"]), {"k": 10}))
    assert len(similar) == 10


def test_popular_means_the_newest_days_of_the_data_not_of_the_wall_clock(storefront_client, shop):
    late = ProductFactory(sku="LATE", title="Latest thing")
    for c in shop["customers"][:2]:  # two customers, 100 days after everything else (and years ago)
        EventFactory(customer=c, product=late, type=Event.Type.PURCHASE, timestamp=T0 + timedelta(days=100))
    services.reset_serving_cache()
    response = storefront_client.get(reverse("recommend-popular"), {"k": 3})
    assert skus(response)[0] == "LATE"


def test_a_training_without_events_fails_visibly_and_keeps_nothing_serving(db, settings, tmp_path):
    from backbone.services import get_active_version

    settings.MODELS_DIR = tmp_path / "models"
    services.reset_serving_cache()
    with pytest.raises(services.RecommendError, match="no customer events"):
        training.fit(version=get_active_version(), parameters={})
    row = RecommenderModel.objects.get()
    assert row.state == RecommenderModel.State.FAILED and "no customer events" in row.error
    assert services.served_model() is None


def test_admin_preview_shows_history_beside_recommendations(client, staff_user, trained):
    client.force_login(staff_user)
    from catalog.models import Customer

    customer = Customer.objects.get(external_id="c0")
    page = client.get(reverse("admin:recommend_customerpreview_change", args=[customer.pk]))
    assert page.status_code == 200
    assert b"because you bought" in page.content and b"Saw model" in page.content
    models_page = client.get(reverse("admin:recommend_recommendermodel_changelist"))
    assert models_page.status_code == 200 and trained.name.encode() in models_page.content


def test_an_operator_rolls_back_from_the_admin_and_the_previous_model_serves(client, staff_user, trained):
    second = train_through_a_job()
    assert second.status == TrainingJob.Status.SUCCEEDED, second.error
    newest = RecommenderModel.objects.get(state=RecommenderModel.State.ACTIVE)
    assert newest.pk != trained.pk
    client.force_login(staff_user)
    url = reverse("admin:recommend_recommendermodel_changelist")
    response = client.post(url, {"action": "roll_back", "_selected_action": [newest.pk]}, follow=True)
    assert response.status_code == 200
    services.reset_serving_cache()
    assert services.served_model().row.pk == trained.pk
    assert RecommenderModel.objects.get(pk=newest.pk).state == RecommenderModel.State.RETIRED


def _store_unreadable_events(customer, product) -> None:
    """Rows the API now refuses but an older platform stored: year 10000 and BC (they broke every read)."""
    from django.db import connection

    with connection.cursor() as cursor:
        for i, stamp in enumerate(["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+14:00"]):
            cursor.execute(
                """INSERT INTO catalog_event (customer_id, product_id, type, value, timestamp, session, client_event_id,
                                              created_at)
                   VALUES (%s, %s, 'purchase', 1, %s::timestamptz, '', %s, now())""",
                [customer.pk, product.pk, stamp, f"bad-{i}"],
            )


def test_stored_out_of_range_events_break_neither_serving_nor_training(storefront_client, shop, settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    customer, product = shop["customers"][0], shop["saws"][9]
    _store_unreadable_events(customer, product)
    services.reset_serving_cache()
    job = train_through_a_job()
    assert job.status == TrainingJob.Status.SUCCEEDED, job.error
    services.reset_serving_cache()
    response = storefront_client.get(f"/api/v1/recommend/customers/{customer.external_id}")
    assert response.status_code == 200, response.content
    assert storefront_client.get("/api/v1/recommend/popular").status_code == 200


@pytest.mark.parametrize("k", ["10.0", "1e1", "ten", ""])
def test_k_must_be_written_as_digits(public_client, k):
    response = public_client.get("/api/v1/recommend/popular", {"k": k})
    assert response.status_code == 400 and "k" in response.json()
