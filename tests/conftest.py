"""Shared fixtures: the real embedded PostgreSQL (pytest-django's test database), API clients."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from catalog.services import create_storefront_key

DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture
def data_dir() -> Path:
    """The real datasets (``../shared/data`` beside the checkout); present on CI."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"real datasets not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user("operator", password="pw-operator-1", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_client(staff_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff_user)
    return client


@pytest.fixture
def storefront_client(db) -> APIClient:
    _, raw = create_storefront_key(name="test storefront")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client
