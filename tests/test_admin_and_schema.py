"""Every admin page renders for an operator; the OpenAPI schema is valid and warning-free."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse

from backbone.extensions import RequireExtension

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: f"{m._meta.app_label}.{m._meta.model_name}")
def test_admin_changelist_and_add_pages_render(client, staff_user, model):
    client.force_login(staff_user)
    opts = model._meta
    assert client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")).status_code == 200
    model_admin = admin.site._registry[model]
    if model_admin.has_add_permission(type("R", (), {"user": staff_user})()):
        assert client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code == 200


def test_operator_starts_a_training_job_from_the_admin(client, staff_user, django_capture_on_commit_callbacks):
    from backbone.models import TrainingJob

    client.force_login(staff_user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("admin:backbone_trainingjob_add"),
            {
                "apps": ["chatbot"],
                "epochs": "1",
                "batch_size": "32",
                "max_examples": "",
                "activate": "on",
                "_save": "Save",
            },
        )
    assert response.status_code == 302
    job = TrainingJob.objects.get()
    assert job.parameters["apps"] == ["chatbot"] and job.parameters["activate"] is True
    assert job.created_by == staff_user
    assert len(callbacks) == 1  # enqueued for the worker on commit
    page = client.get(reverse("admin:backbone_trainingjob_change", args=[job.pk]))
    assert b"<progress" in page.content and b'http-equiv="refresh"' in page.content
    assert b'name="_save"' not in page.content  # a job's page is read-only
    client.post(reverse("admin:backbone_trainingjob_change", args=[job.pk]), {"_save": "Save"})
    assert TrainingJob.objects.count() == 1


def test_openapi_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/v1/health" in (tmp_path / "schema.yaml").read_text()


def test_missing_extension_stops_migrations_with_a_clear_message():
    operation = RequireExtension("no_such_extension_here")
    with (
        connection.schema_editor() as editor,
        pytest.raises(CommandError, match="no_such_extension_here.*not available"),
    ):
        operation.database_forwards("backbone", editor, None, None)


def test_operator_rolls_the_backbone_back_from_the_admin(client, staff_user, tiny_active_version, tiny_model_dir):
    from backbone.models import ModelVersion
    from backbone.services import embed_version, get_active_version, switch_active_version

    newer = ModelVersion.objects.create(name="newer", path=str(tiny_model_dir), state=ModelVersion.State.READY)
    switch_active_version(version_id=newer.pk)
    client.force_login(staff_user)
    response = client.post(
        reverse("admin:backbone_modelversion_changelist"),
        {"action": "roll_back", "_selected_action": [newer.pk]},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == ["rolled back: tiny is activating."]
    embed_version(version_id=tiny_active_version.pk)  # what the bulk worker runs next (nothing to re-embed)
    assert get_active_version().pk == tiny_active_version.pk
