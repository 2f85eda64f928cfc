"""The OpenAPI schema is the truth: the errors each operation answers, who may call it, the limits the
code enforces, and request bodies checked as strictly as the schema reads (config/schema.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers

from ads.models import Advertiser
from catalog.serializers import decimal_pattern, wrong_json_type
from tests.factories import ProductFactory

METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict):
    """(method, path, operation) for every operation of the schema."""
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def test_every_operation_documents_the_errors_it_can_answer(schema):
    for method, path, operation in operations(schema):
        responses, label = operation["responses"], f"{method.upper()} {path}"
        locations = {parameter["in"] for parameter in operation.get("parameters", [])}
        expected = {"429"}
        if operation["security"] != [{}]:
            expected |= {"401", "403"}
        if "requestBody" in operation:
            expected |= {"400", "413", "415"}
        if "query" in locations:
            expected.add("400")
        if "path" in locations:
            expected |= {"404", "414"}
        assert expected <= set(responses), label
        assert "Retry-After" in responses["429"]["headers"], label
        for status in set(responses) - {"414"}:
            if status >= "400":
                assert "application/json" in responses[status]["content"], f"{label} {status}"


def test_conflicts_are_documented_with_their_body(schema):
    paths = schema["paths"]
    for path in ("/api/v1/model-versions/{id}/activate", "/api/v1/model-versions/roll-back", "/api/v1/ads/clicks"):
        assert "content" in paths[path]["post"]["responses"]["409"], path
    assert "409" in paths["/api/v1/products"]["post"]["responses"]  # a taken SKU
    assert "404" in paths["/api/v1/ads/creatives"]["post"]["responses"]  # an unknown campaign


def test_staff_only_operations_do_not_list_the_storefront_key(schema):
    paths = schema["paths"]
    staff = paths["/api/v1/training-jobs"]["post"]
    assert all("storefrontKey" not in scheme for scheme in staff["security"])
    assert "staff only" in staff["description"]
    assert all("storefrontKey" not in scheme for scheme in paths["/api/v1/products"]["post"]["security"])
    for path, method, scope in [
        ("/api/v1/products", "get", "any storefront key"),
        ("/api/v1/events", "post", "a server-scope storefront key"),
    ]:
        operation = paths[path][method]
        assert {"storefrontKey": []} in operation["security"]
        assert scope in operation["description"]


def parameter(operation: dict, name: str) -> dict:
    return next(p["schema"] for p in operation["parameters"] if p["name"] == name)


def test_the_schema_states_the_limits_the_code_enforces(schema):
    components, paths = schema["components"]["schemas"], schema["paths"]
    events = components["EventBatchRequest"]["properties"]["events"]
    assert (events["minItems"], events["maxItems"]) == (1, 5000)
    training = components["StartTrainingRequest"]["properties"]
    assert training["apps"]["minItems"] == training["tasks"]["minItems"] == 1
    assert "search" in components[training["apps"]["items"]["$ref"].rsplit("/", 1)[1]]["enum"]
    k = parameter(paths["/api/v1/recommend/popular"]["get"], "k")
    assert (k["minimum"], k["maximum"]) == (1, 100)
    page_size = parameter(paths["/api/v1/search"]["get"], "page_size")
    assert (page_size["minimum"], page_size["maximum"]) == (1, 100)
    for path in ("/api/v1/products", "/api/v1/training-jobs", "/api/v1/ads/slots", "/api/v1/recommend/models"):
        assert parameter(paths[path]["get"], "page_size") == {"type": "integer", "minimum": 1, "maximum": 500}
    assert components["HybridParametersRequest"]["additionalProperties"] is False
    assert "multipart/form-data" not in paths["/api/v1/products"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize(
    ("field", "accepted", "refused"),
    [
        (
            serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0),
            ["0", "0.5", "12.50", "9999999999.99"],
            ["", "-1", ".5", "5.", "1e2", "+1", " 1", "01", "0.123", "10000000000", "\u0661", 5],
        ),
        (
            serializers.DecimalField(max_digits=12, decimal_places=4, min_value=Decimal("0.0001")),
            ["0.0001", "0.5", "1", "12.3400"],
            ["0", "0.0", "0.00001", "-0.5"],
        ),
    ],
)
def test_a_decimal_is_text_in_the_documented_pattern(field, accepted, refused):
    pattern = decimal_pattern(field)
    for value in accepted:
        assert wrong_json_type(field, value) is None, (pattern, value)
        field.run_validation(value)
    for value in refused:
        assert wrong_json_type(field, value), (pattern, value)


@pytest.mark.django_db
def test_an_empty_or_unreadable_product_filter_is_a_400(storefront_client):
    ProductFactory(price="12.00")
    for query in ("max_price=", "in_stock=maybe", "title=", "min_price=abc"):
        response = storefront_client.get(f"/api/v1/products?{query}")
        assert response.status_code == 400, query
        assert query.split("=")[0] in response.json()
    assert storefront_client.get("/api/v1/products?max_price=20&in_stock=true").json()["count"] == 1


@pytest.mark.django_db
def test_a_price_bound_past_postgresqls_numeric_is_read_as_a_number_not_a_500(storefront_client):
    ProductFactory(price="12.00")
    assert storefront_client.get("/api/v1/products?min_price=1e-999999999").json()["count"] == 1
    assert storefront_client.get("/api/v1/products?max_price=1e999999999").status_code == 400
    search = "/api/v1/search?q=drill&mode=lexical&facets=false&min_price="
    assert storefront_client.get(search + "1e-999999999").status_code == 200
    for value in ("1e999999999", "nan", "-1"):
        assert storefront_client.get(search + value).status_code == 400, value


@pytest.mark.django_db
def test_page_size_is_honoured_within_its_bounds(storefront_client):
    ProductFactory.create_batch(3)
    assert len(storefront_client.get("/api/v1/products?page_size=2").json()["results"]) == 2
    for value in ("0", "501", "abc", "2.0"):
        response = storefront_client.get(f"/api/v1/products?page_size={value}")
        assert response.status_code == 400 and "page_size" in response.json(), value
    assert storefront_client.get("/api/v1/products?page=").status_code == 404  # as page=x; was page 1


@pytest.mark.django_db
def test_a_list_filter_sent_empty_is_a_400(staff_client):
    for url in ("/api/v1/model-versions?state=", "/api/v1/training-jobs?status=", "/api/v1/recommend/models?state="):
        response = staff_client.get(url)
        assert response.status_code == 400 and url.rsplit("?", 1)[1].rstrip("=") in response.json(), url
    assert staff_client.get("/api/v1/training-jobs?status=queued").status_code == 200


@pytest.mark.django_db
def test_a_value_of_another_json_type_is_a_400_naming_the_field(staff_client, storefront_client):
    product = {"sku": "S-1", "title": "Saw", "price": 9.99, "in_stock": 0, "brand": 5}
    response = staff_client.post("/api/v1/products", product, format="json")
    assert response.status_code == 400
    assert {"price", "in_stock", "brand"} <= set(response.json())
    chat = storefront_client.post("/api/v1/chat/messages", {"text": "hi", "session": 7}, format="json")
    assert chat.status_code == 400 and set(chat.json()) == {"session"}
    form = staff_client.post("/api/v1/products", {"sku": "S-1", "title": "Saw"}, format="multipart")
    assert form.status_code == 415


@pytest.mark.django_db
def test_a_taken_unique_value_is_a_409_and_an_unknown_reference_a_404(staff_client):
    ProductFactory(sku="TAKEN")
    taken = staff_client.post("/api/v1/products", {"sku": "TAKEN", "title": "Again"}, format="json")
    assert taken.status_code == 409 and "sku" in taken.json()
    missing = staff_client.post("/api/v1/ads/creatives", {"campaign": 999, "title": "Ad"}, format="json")
    assert missing.status_code == 404 and "campaign" in missing.json()
    mixed = staff_client.post("/api/v1/ads/creatives", {"campaign": 999}, format="json")
    assert mixed.status_code == 400  # a missing title too: DRF's 400
    Advertiser.objects.create(name="Acme")
    assert staff_client.post("/api/v1/ads/advertisers", {"name": "Acme"}, format="json").status_code == 409


@pytest.mark.django_db
def test_recommender_parameters_are_known_and_typed(staff_client):
    url = "/api/v1/recommend/models"
    unknown = staff_client.post(url, {"parameters": {"nope": 1}}, format="json")
    assert unknown.status_code == 400 and "nope" in unknown.json()["parameters"]
    wrong = staff_client.post(url, {"parameters": {"w_pop": "high", "bags": 2.5}}, format="json")
    assert wrong.status_code == 400 and {"w_pop", "bags"} <= set(wrong.json()["parameters"])
    assert staff_client.post(url, {"parameters": {"w_pop": 0.3, "bags": 2}}, format="json").status_code == 202
