"""``/api/v1/health`` checks the database, the broker and the model for real."""

from __future__ import annotations

import pytest

from config import health


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_health_is_ok_with_database_broker_and_model(api_client):
    response = api_client.get("/api/v1/health")
    assert response.status_code == 200, response.json()
    checks = response.json()["checks"]
    assert checks["database"]["vector"].startswith("0.8")
    assert checks["model"]["dim"] == 384
    assert checks["broker"]["ok"] is True


@pytest.mark.django_db
def test_health_reports_a_failing_check_as_503(api_client, monkeypatch):
    def broken():
        raise ConnectionError("broker unreachable")

    monkeypatch.setitem(health.CHECKS, "broker", broken)
    monkeypatch.setitem(health.CHECKS, "model", lambda: {"version": "stub"})
    response = api_client.get("/api/v1/health")
    assert response.status_code == 503
    assert "broker unreachable" in response.json()["checks"]["broker"]["error"]
