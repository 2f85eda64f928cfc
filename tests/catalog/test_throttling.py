"""Rate limits per key and per address, and the lockout after failed logins (429 with Retry-After)."""

from __future__ import annotations

import base64

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from catalog.throttles import AddressRateThrottle, KeyRateThrottle

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_failed_logins():
    cache.clear()


def basic(username: str, password: str, address: str = "10.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


def test_the_21st_wrong_staff_password_is_a_429_and_locks_out_the_right_one_too(staff_user, settings):
    statuses = [basic("operator", f"wrong-{i}").get("/api/v1/training-jobs").status_code for i in range(30)]
    assert statuses[: settings.LOGIN_FAILURE_LIMIT] == [401] * settings.LOGIN_FAILURE_LIMIT
    assert set(statuses[settings.LOGIN_FAILURE_LIMIT :]) == {429}
    locked = basic("operator", "pw-operator-1").get("/api/v1/training-jobs")
    assert locked.status_code == 429
    assert 0 < int(locked["Retry-After"]) <= settings.LOGIN_LOCKOUT_SECONDS + 1
    assert "Too many failed logins" in locked.json()["detail"]
    # another address is not locked out
    assert basic("operator", "pw-operator-1", address="10.0.0.2").get("/api/v1/training-jobs").status_code == 200


def test_unknown_api_keys_lock_the_address_out(settings):
    client = APIClient(REMOTE_ADDR="10.0.0.3")
    statuses = []
    for i in range(settings.LOGIN_FAILURE_LIMIT + 2):
        client.credentials(HTTP_X_API_KEY=f"guess-{i}")
        statuses.append(client.get("/api/v1/products").status_code)
    assert statuses[-1] == 429 and statuses[0] == 401


def test_failed_admin_logins_lock_the_admin_login_out(client, staff_user, settings):
    settings.LOGIN_FAILURE_LIMIT = 5  # each failed admin login hashes a password (~0.5 s)
    for i in range(settings.LOGIN_FAILURE_LIMIT):
        client.post("/admin/login/", {"username": "operator", "password": f"wrong-{i}"}, REMOTE_ADDR="10.0.0.4")
    client.post("/admin/login/", {"username": "operator", "password": "pw-operator-1"}, REMOTE_ADDR="10.0.0.4")
    assert "_auth_user_id" not in client.session
    client.post("/admin/login/", {"username": "operator", "password": "pw-operator-1"}, REMOTE_ADDR="10.0.0.5")
    assert client.session["_auth_user_id"] == str(staff_user.pk)


def test_requests_past_the_key_rate_get_429_with_retry_after(storefront_client, monkeypatch):
    monkeypatch.setitem(KeyRateThrottle.THROTTLE_RATES, "key", "3/m")
    statuses = [storefront_client.get("/api/v1/products").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    answer = storefront_client.get("/api/v1/products")
    assert 0 < int(answer["Retry-After"]) <= 60
    assert APIClient().get("/api/v1/health").status_code != 429  # other callers are not affected


def test_requests_past_the_address_rate_get_429(api_client, monkeypatch):
    monkeypatch.setitem(AddressRateThrottle.THROTTLE_RATES, "ip", "2/m")
    statuses = [api_client.get("/api/v1/health").status_code for _ in range(3)]
    assert statuses[-1] == 429
