"""Every error under /api/ answers JSON, carries a request id, and a 5xx leaves its traceback in the log."""

from __future__ import annotations

import json
import logging

import pytest
from rest_framework.test import APIClient

from catalog.views import ProductViewSet

pytestmark = pytest.mark.django_db


def test_an_unknown_api_url_is_a_json_404_with_the_request_id(storefront_client):
    response = storefront_client.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found.", "request_id": response["X-Request-ID"]}


def test_a_body_over_the_upload_limit_is_a_json_413(storefront_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    body = json.dumps({"events": [{"client_event_id": "x" * 1000}] * 1100})
    response = storefront_client.generic("POST", "/api/v1/events", body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "larger than 1 MB" in response.json()["detail"]


def test_a_500_is_json_and_its_traceback_is_logged_under_the_request_id(storefront_client, monkeypatch, caplog):
    def broken(self):
        raise RuntimeError("provoked for the test")

    monkeypatch.setattr(ProductViewSet, "get_queryset", broken)
    storefront_client.raise_request_exception = False
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = storefront_client.get("/api/v1/products", HTTP_X_REQUEST_ID="shop-req-42")
    assert response.status_code == 500
    assert response.json()["request_id"] == "shop-req-42" == response["X-Request-ID"]
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.exc_info and "provoked for the test" in str(record.exc_info[1])
    assert record.request_id == "shop-req-42"
    # the console format writes the id into the line
    console = next(handler for handler in logging.getLogger().handlers if handler.name == "console")
    formatted = console.format(record)
    assert "[shop-req-42]" in formatted and "RuntimeError: provoked for the test" in formatted


@pytest.mark.parametrize("incoming", ["", "has space", "x" * 65, "line\nbreak"])
def test_an_unsafe_incoming_request_id_is_replaced(api_client: APIClient, incoming):
    response = api_client.get("/api/v1/health", HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-ID"] != incoming
    assert len(response["X-Request-ID"]) == 32


def test_admin_pages_keep_html_errors(client):
    response = client.get("/admin/no-such-page/")
    assert response.status_code in (302, 404)
    assert not response["Content-Type"].startswith("application/json")
