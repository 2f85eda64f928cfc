"""Backbone API: training jobs and model versions are staff-only; bad bodies get 400."""

from __future__ import annotations

import pytest

from backbone.models import ModelVersion, TrainingJob

pytestmark = pytest.mark.django_db


def test_anonymous_and_storefront_cannot_start_training(api_client, storefront_client):
    assert api_client.post("/api/v1/training-jobs", {"tasks": ["intents"]}, format="json").status_code in (401, 403)
    assert storefront_client.post("/api/v1/training-jobs", {"tasks": ["intents"]}, format="json").status_code == 403
    assert TrainingJob.objects.count() == 0


def test_staff_starts_and_cancels_a_training_job(staff_client):
    response = staff_client.post("/api/v1/training-jobs", {"tasks": ["intents"], "epochs": 2}, format="json")
    assert response.status_code == 201, response.json()
    job_id = response.json()["id"]
    assert response.json()["status"] == "queued"
    assert staff_client.get(f"/api/v1/training-jobs/{job_id}").json()["parameters"]["epochs"] == 2
    assert staff_client.post(f"/api/v1/training-jobs/{job_id}/cancel").json()["status"] == "cancelled"
    assert staff_client.post(f"/api/v1/training-jobs/{job_id}/cancel").status_code == 409


def test_invalid_training_request_gets_field_messages(staff_client):
    response = staff_client.post("/api/v1/training-jobs", {"tasks": ["nope"], "epochs": -1}, format="json")
    assert response.status_code == 400
    assert {"tasks", "epochs"} <= set(response.json())
    assert TrainingJob.objects.count() == 0


def test_staff_lists_and_activates_model_versions(staff_client, tiny_model_dir, django_capture_on_commit_callbacks):
    version = ModelVersion.objects.create(name="candidate", path=str(tiny_model_dir), state=ModelVersion.State.READY)
    assert staff_client.get("/api/v1/model-versions").status_code == 200
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(f"/api/v1/model-versions/{version.pk}/activate")
    assert response.status_code == 202
    assert response.json()["state"] == "activating"
    assert len(callbacks) == 1


def test_openapi_schema_and_docs_are_served(api_client):
    schema = api_client.get("/api/v1/schema")
    assert schema.status_code == 200
    assert b"/api/v1/events" in schema.content and b"/api/v1/training-jobs" in schema.content
    assert api_client.get("/api/v1/docs").status_code == 200


def test_service_errors_answer_json_through_the_one_handler(staff_client, storefront_client):
    """LifecycleError -> 409 detail, UnknownProduct -> 404 detail, TrainingError -> 400 on ``parameters``."""
    ModelVersion.objects.all().delete()
    rolled = staff_client.post("/api/v1/model-versions/roll-back")
    assert rolled.status_code == 409 and "no earlier" in rolled.json()["detail"]
    missing = storefront_client.get("/api/v1/recommend/products/NOPE/similar")
    assert missing.status_code == 404 and "NOPE" in missing.json()["detail"]
    refused = staff_client.post("/api/v1/training-jobs", {"apps": ["nope"]}, format="json")
    assert refused.status_code == 400 and refused.json()


def test_the_handler_maps_each_kind_to_its_status():
    from backbone import errors

    for exc, expected in [
        (errors.InvalidInput("bad"), (400, {"non_field_errors": ["bad"]})),
        (errors.InvalidInput("bad", field="k"), (400, {"k": ["bad"]})),
        (errors.NotFound("gone"), (404, {"detail": "gone"})),
        (errors.Conflict("twice", field="token"), (409, {"token": ["twice"]})),
    ]:
        response = errors.exception_handler(exc, {})
        assert (response.status_code, response.data) == expected
