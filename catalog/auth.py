"""Storefront API keys for DRF: ``Authorization: Api-Key <key>`` or ``X-Api-Key: <key>``."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from catalog import throttles
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
        if key is None:  # a valid key costs no lockout lookup; a wrong one from a locked-out client is a 429
            throttles.refuse_if_locked(request)
            throttles.record_failure(request)
            raise exceptions.AuthenticationFailed("Invalid or inactive API key.")
        if key.last_used_at is None or (timezone.now() - key.last_used_at).total_seconds() > 60:
            StorefrontKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
        return AnonymousUser(), key

    def authenticate_header(self, request):
        return self.keyword


class LockoutBasicAuthentication(authentication.BasicAuthentication):
    """HTTP basic auth for staff; a client locked out by failed logins gets 429 before any password is hashed."""

    def authenticate(self, request):
        if request.headers.get("Authorization", "").lower().startswith("basic "):
            throttles.refuse_if_locked(request)
        return super().authenticate(request)


def _is_staff(request) -> bool:
    user = request.user
    return bool(user and user.is_authenticated and user.is_staff)


class PublicAccess(permissions.BasePermission):
    """Any storefront key (public or server) or staff: what a browser may call."""

    def has_permission(self, request, view):
        return isinstance(request.auth, StorefrontKey) or _is_staff(request)


class ServerAccess(permissions.BasePermission):
    """A server-scope storefront key or staff: events, a named customer's recommendations and reasons."""

    message = "This operation needs a server-scope key (the shop's back end), not a public one."

    def has_permission(self, request, view):
        if isinstance(request.auth, StorefrontKey):
            return request.auth.scope == StorefrontKey.Scope.SERVER
        return _is_staff(request)


class StorefrontKeyScheme(OpenApiAuthenticationExtension):
    target_class = "catalog.auth.StorefrontKeyAuthentication"
    name = "storefrontKey"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Api-Key"}


class LockoutBasicScheme(OpenApiAuthenticationExtension):
    target_class = "catalog.auth.LockoutBasicAuthentication"
    name = "basicAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "basic"}
