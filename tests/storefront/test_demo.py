"""The demo storefront page: staff only, with working demo keys kept in STATE_DIR."""

from __future__ import annotations

import json
import stat

import pytest
from django.conf import settings

from catalog.models import StorefrontKey
from storefront import services
from tests.ads.conftest import AdSlotFactory
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def keys_file(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "STATE_DIR", tmp_path)
    return tmp_path / services.KEYS_FILE


def page_context(response) -> dict:
    text = response.content.decode()
    start = text.index('<script id="demo-context" type="application/json">') + len(
        '<script id="demo-context" type="application/json">'
    )
    return json.loads(text[start : text.index("</script>", start)])


def test_the_page_is_for_staff_only(client, keys_file):
    response = client.get("/demo/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not keys_file.exists()


def test_staff_who_are_not_superusers_get_no_keys(client, django_user_model, keys_file):
    clerk = django_user_model.objects.create_user("clerk", password="pw-clerk-1", is_staff=True)
    client.force_login(clerk)
    assert client.get("/demo/").status_code == 403 and not keys_file.exists()


def test_the_page_gives_its_script_keys_customers_and_a_slot(admin_client, keys_file):
    EventFactory(customer__external_id="shopper-1")
    AdSlotFactory(name="home-banner")
    response = admin_client.get("/demo/")
    assert response.status_code == 200
    context = page_context(response)
    assert context["customers"] == ["shopper-1"] and context["slot"] == "home-banner"
    assert context["keys"]["public"].startswith("pk_") and context["keys"]["server"].startswith("sk_")
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600


def test_the_keys_are_made_once_and_remade_when_revoked(admin_client, keys_file):
    first = page_context(admin_client.get("/demo/"))["keys"]
    assert page_context(admin_client.get("/demo/"))["keys"] == first
    assert StorefrontKey.objects.count() == 2
    StorefrontKey.objects.filter(scope="public").update(active=False)
    again = page_context(admin_client.get("/demo/"))["keys"]
    assert again["server"] == first["server"] and again["public"] != first["public"]


def test_the_page_keys_call_the_api_with_their_scopes(admin_client, api_client, keys_file):
    keys = page_context(admin_client.get("/demo/"))["keys"]
    event = {"client_event_id": "demo-1", "product": EventFactory().product.sku, "type": "view",
             "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
    assert api_client.get("/api/v1/recommend/popular", HTTP_X_API_KEY=keys["public"]).status_code == 200
    public = api_client.post("/api/v1/events", {"events": [event]}, format="json", HTTP_X_API_KEY=keys["public"])
    assert public.status_code == 403
    server = api_client.post("/api/v1/events", {"events": [event]}, format="json", HTTP_X_API_KEY=keys["server"])
    assert server.status_code == 201
