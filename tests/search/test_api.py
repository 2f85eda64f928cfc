"""The search API: auth, payload shape, and bad input as 400s (never 500s)."""

from __future__ import annotations

import pytest

from search.models import SearchClick

pytestmark = pytest.mark.django_db


def test_anonymous_cannot_search(api_client):
    assert api_client.get("/api/v1/search", {"q": "drill"}).status_code in (401, 403)


def test_storefront_searches_with_filters_and_facets(storefront_client, catalogue):
    response = storefront_client.get(
        "/api/v1/search", {"q": "drill", "category": "tools", "min_price": "10", "in_stock": "true", "page_size": 2}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {"search_id", "query", "corrected", "total", "page", "results", "facets", "ranker"}
    assert len(body["results"]) == 2
    assert set(body["results"][0]) >= {"sku", "title", "price", "score", "matched_by"}
    assert {"category", "brand", "price"} == set(body["facets"])


@pytest.mark.parametrize(
    "params, field",
    [
        ({"q": ""}, "q"),
        ({"q": "x" * 10_000}, "q"),
        ({}, "q"),
        ({"q": "drill", "colour": "red"}, "colour"),
        ({"q": "drill", "min_price": "-5"}, "min_price"),
        ({"q": "drill", "sort": "cheapest"}, "sort"),
        ({"q": "drill", "page": "0"}, "page"),
        ({"q": "drill", "page_size": "1000"}, "page_size"),
        ({"q": "drill", "in_stock": "maybe"}, "in_stock"),
    ],
)
def test_bad_search_input_is_a_400_naming_the_field(storefront_client, params, field):
    response = storefront_client.get("/api/v1/search", params)
    assert response.status_code == 400
    assert field in response.json()


def test_a_price_range_that_holds_nothing_is_an_empty_answer(storefront_client, catalogue):
    """min_price above max_price is a valid request (a storefront slider crossed) that no product matches."""
    response = storefront_client.get("/api/v1/search", {"q": "drill", "min_price": "50", "max_price": "10"})
    assert response.status_code == 200 and response.json()["total"] == 0 and response.json()["results"] == []
    assert storefront_client.get("/api/v1/search", {"q": "drill"}).json()["total"] > 0


def test_page_beyond_the_end_is_an_empty_page(storefront_client, catalogue):
    response = storefront_client.get("/api/v1/search", {"q": "drill", "page": 999})
    assert response.status_code == 200
    assert response.json()["results"] == [] and response.json()["total"] > 0


def test_query_of_only_punctuation_is_answered(storefront_client, catalogue):
    response = storefront_client.get("/api/v1/search", {"q": "&|!():*'\\"})
    assert response.status_code == 200


def test_suggest_and_click_round_trip(storefront_client, catalogue):
    response = storefront_client.get("/api/v1/search/suggest", {"q": "hamer"})
    assert response.status_code == 200
    assert "Claw hammer 16 oz" in [s["text"] for s in response.json()["suggestions"]]
    assert storefront_client.get("/api/v1/search/suggest", {"q": "x" * 10_000}).status_code == 400
    too_long = storefront_client.get("/api/v1/search/suggest", {"q": "hammer " * 10})
    assert too_long.status_code == 400 and "64" in too_long.json()["q"][0]
    search = storefront_client.get("/api/v1/search", {"q": "hammer"}).json()
    hit = search["results"][0]
    click = {"search_id": search["search_id"], "sku": hit["sku"], "position": 1}
    assert storefront_client.post("/api/v1/search/clicks", click, format="json").status_code == 201
    assert SearchClick.objects.count() == 1
    bad = storefront_client.post("/api/v1/search/clicks", {**click, "search_id": 10**9}, format="json")
    assert bad.status_code == 404 and "search_id" in bad.json()
    unknown = storefront_client.post("/api/v1/search/clicks", {**click, "sku": "no-such-sku"}, format="json")
    assert unknown.status_code == 404 and "sku" in unknown.json()


def test_admin_lists_search_analytics(client, staff_user, storefront_client, catalogue):
    storefront_client.get("/api/v1/search", {"q": "hammer"})
    client.force_login(staff_user)
    response = client.get("/admin/search/searchquerylog/")
    assert response.status_code == 200
    assert b"Top queries" in response.content and b"hammer" in response.content
