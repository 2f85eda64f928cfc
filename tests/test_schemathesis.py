"""Schemathesis against the WSGI app on the test database: every answer is one the schema documents.

Storefront-key operations are called with a server key, staff-only ones as staff (basic auth, a fast
hasher). Every check runs, ``positive_data_acceptance`` included: a request the schema allows is
answered 2xx, or 404 where it names something that does not exist (an unknown SKU, slot or search).
Event times are drawn from the window the API accepts (its description; a JSON Schema cannot bound
a date-time), since an event outside it is refused with a 400 on purpose.
"""

from __future__ import annotations

import base64

import hypothesis
import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.utils.dateparse import parse_datetime
from hypothesis import HealthCheck, Phase
from schemathesis import checks
from schemathesis.config import SchemathesisConfig

from backbone.services import reset_caches
from catalog.services import create_storefront_key
from catalog.throttles import AddressRateThrottle, KeyRateThrottle
from config.wsgi import application
from tests.factories import EventFactory, ProductFactory

pytestmark = pytest.mark.slow
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
]
PASSWORD = "fuzz-operator-1"
IN_WINDOW = "2024-06-01T12:00:00Z"
STAFF = {"Authorization": "Basic " + base64.b64encode(f"fuzzer:{PASSWORD}".encode()).decode()}


# Read at collection (the schema view needs no database); calls happen in each test's transaction.
# Its own configuration, not the repository's schemathesis.toml (that one is for the CLI: it lets
# the events operation answer 400 to any time outside the window; this test draws times inside it).
schema = schemathesis.openapi.from_wsgi("/api/v1/schema", application, config=SchemathesisConfig())


@schema.hook
def map_body(ctx, body):
    """Event times inside the accepted window (a time that is not ISO 8601 is left as generated)."""
    for event in body.get("events", []) if isinstance(body, dict) and isinstance(body.get("events"), list) else []:
        if (
            isinstance(event, dict)
            and isinstance(event.get("timestamp"), str)
            and parse_datetime_or_none(event["timestamp"])
        ):
            event["timestamp"] = IN_WINDOW
    return body


def parse_datetime_or_none(text: str):
    try:
        return parse_datetime(text.strip())
    except ValueError:
        return None


@pytest.fixture
def credentials(db, settings, monkeypatch, django_user_model) -> dict:
    """Headers per kind of operation (a server-scope key where one is accepted, staff elsewhere), with a
    few products and events behind them and the rate limits out of the way.

    Calls go straight to the WSGI app, in the test's transaction: as Django's test client does, the
    connection is not closed at the end of each request."""
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    reset_caches()  # no backbone version cached by an earlier test (its row is gone)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    for throttle in (KeyRateThrottle, AddressRateThrottle):
        monkeypatch.setattr(throttle, "rate", "100000/s", raising=False)
    django_user_model.objects.create_user("fuzzer", password=PASSWORD, is_staff=True, is_superuser=True)
    for product in ProductFactory.create_batch(3):
        EventFactory(product=product)
    _, raw = create_storefront_key(name="fuzzing storefront")
    yield {"key": {"X-Api-Key": raw}, "staff": STAFF}
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)
    reset_caches()


@schema.parametrize()
@hypothesis.settings(
    max_examples=8,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_every_answer_is_documented(case, credentials):
    security = case.operation.definition.raw.get("security", [])
    headers = credentials["key" if {"storefrontKey": []} in security else "staff"]
    case.call_and_validate(headers=headers, checks=CHECKS)
