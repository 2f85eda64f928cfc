"""``manage.py bootstrap_platform``: first operator account, a server and a public storefront key, the base version
(and the active version's serving encoder)."""

from __future__ import annotations

import json
import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from backbone.services import ensure_base_version, export_serving_encoder, get_active_version, serves_with_onnx
from catalog.models import StorefrontKey
from catalog.services import create_storefront_key


class Command(BaseCommand):
    help = "Create the first superuser and storefront key if there are none (idempotent); print them once."

    def add_arguments(self, parser):
        parser.add_argument("--admin-user", default=os.environ.get("ADMIN_USER", "admin"))
        parser.add_argument("--admin-password", default=os.environ.get("ADMIN_PASSWORD", ""))

    def handle(self, *args, admin_user, admin_password, **options):
        out: dict[str, str] = {}
        user_model = get_user_model()
        if not user_model.objects.filter(is_superuser=True).exists():
            password = admin_password or secrets.token_urlsafe(12)
            user_model.objects.create_superuser(admin_user, password=password)
            out.update(admin_user=admin_user, admin_password=password)
        if not StorefrontKey.objects.filter(scope=StorefrontKey.Scope.SERVER).exists():
            _, out["storefront_key"] = create_storefront_key(name="default storefront")
        if not StorefrontKey.objects.filter(scope=StorefrontKey.Scope.PUBLIC).exists():
            _, out["public_key"] = create_storefront_key(name="default storefront (browser)", scope="public")
        version = ensure_base_version()
        out["active_model"] = version.name if version.state == version.State.ACTIVE else "(another version)"
        if serves_with_onnx():
            export_serving_encoder(get_active_version())  # the web processes load it; none exports it
        self.stdout.write(json.dumps(out))
