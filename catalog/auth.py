"""Storefront API keys for DRF: ``Authorization: Api-Key <key>`` or ``X-Api-Key: <key>``."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from catalog.models import StorefrontKey, hash_key


class StorefrontKeyAuthentication(authentication.BaseAuthentication):
    """Authenticate a storefront by API key; ``request.auth`` is the StorefrontKey."""

    keyword = "Api-Key"

    def authenticate(self, request):
        raw = request.headers.get("X-Api-Key")
        if raw is None:
            header = request.headers.get("Authorization", "")
            if not header.startswith(self.keyword + " "):
                return None
            raw = header[len(self.keyword) + 1 :].strip()
        key = StorefrontKey.objects.filter(key_hash=hash_key(raw), active=True).first()
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or inactive API key.")
        if key.last_used_at is None or (timezone.now() - key.last_used_at).total_seconds() > 60:
            StorefrontKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
        return AnonymousUser(), key

    def authenticate_header(self, request):
        return self.keyword


class IsStorefrontOrStaff(permissions.BasePermission):
    """Storefront keys and staff users may call read endpoints and ingest events."""

    def has_permission(self, request, view):
        if isinstance(request.auth, StorefrontKey):
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)


class StorefrontKeyScheme(OpenApiAuthenticationExtension):
    target_class = "catalog.auth.StorefrontKeyAuthentication"
    name = "storefrontKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
