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


@pytest.fixture(autouse=True)
def _fresh_request_rates():
    """Each test starts with no requests counted against the rate limits (all tests share one address)."""
    from django.core.cache import caches

    caches["throttle"].clear()


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


@pytest.fixture
def public_client(db) -> APIClient:
    """A browser's client: a public-scope key."""
    _, raw = create_storefront_key(name="test browser", scope="public")
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised BERT (1 layer, 384 wide to fit vector(384)) with MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from backbone.encoder import packaged_model_path

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=1, num_attention_heads=4, intermediate_size=256
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(packaged_model_path(), local_files_only=True).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_active_version(db, tiny_model_dir, settings):
    """Make the tiny model the active backbone version and the base that training jobs fine-tune."""
    from backbone.models import ModelVersion
    from backbone.services import reset_caches

    settings.BACKBONE_BASE_MODEL = str(tiny_model_dir)
    ModelVersion.objects.filter(state=ModelVersion.State.ACTIVE).update(state=ModelVersion.State.RETIRED)
    version = ModelVersion.objects.create(name="tiny", path=str(tiny_model_dir), state=ModelVersion.State.ACTIVE)
    reset_caches()
    yield version
    reset_caches()
