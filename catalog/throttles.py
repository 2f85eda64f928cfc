"""Request rates per API key and per client address, and a lockout after repeated failed logins.

Rates (``THROTTLE_RATE_KEY``, ``THROTTLE_RATE_IP``) are DRF throttles on the ``throttle`` cache:
Redis when ``CACHE_URL`` names one (shared by every web process), else each process's memory. Failed
logins (a wrong staff password on the API or the admin, an unknown API key) are counted per client
address in the ``default`` cache (the database unless ``CACHE_URL`` is set, so every process agrees):
past ``LOGIN_FAILURE_LIMIT`` within ``LOGIN_LOCKOUT_SECONDS`` that address gets 429 with
``Retry-After`` (the admin: "invalid login") without any password being hashed.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache, caches
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from rest_framework import exceptions, throttling

from catalog.models import StorefrontKey


class KeyRateThrottle(throttling.SimpleRateThrottle):
    """Requests per storefront key, or per staff user (``THROTTLE_RATE_KEY``)."""

    scope = "key"
    cache = caches["throttle"]

    def get_cache_key(self, request, view) -> str | None:
        if isinstance(request.auth, StorefrontKey):
            return self.cache_format % {"scope": self.scope, "ident": f"key-{request.auth.pk}"}
        if request.user and request.user.is_authenticated:
            return self.cache_format % {"scope": self.scope, "ident": f"user-{request.user.pk}"}
        return None


class AddressRateThrottle(throttling.SimpleRateThrottle):
    """Requests per client address, whoever is calling (``THROTTLE_RATE_IP``; ``NUM_PROXIES`` in front)."""

    scope = "ip"
    cache = caches["throttle"]

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


def client_address(request) -> str:
    """The address DRF's throttles see for ``request`` (a Django or DRF request)."""
    return throttling.BaseThrottle().get_ident(request) or "unknown"


def _failures_key(request) -> str:
    return f"login-failures:{client_address(request)}"


def locked_for(request) -> int:
    """Seconds until this client may try to log in again; 0 when it is not locked out."""
    failures = cache.get(_failures_key(request))
    if not failures or len(failures) < settings.LOGIN_FAILURE_LIMIT:
        return 0
    return max(1, int(failures[0] + settings.LOGIN_LOCKOUT_SECONDS - time.time()) + 1)


def record_failure(request) -> None:
    """Count one failed login of this client (the oldest ones drop out of the window)."""
    now = time.time()
    window = settings.LOGIN_LOCKOUT_SECONDS
    key = _failures_key(request)
    failures = [t for t in cache.get(key, []) if t > now - window][-settings.LOGIN_FAILURE_LIMIT + 1 :]
    cache.set(key, [*failures, now], timeout=window)


def refuse_if_locked(request) -> None:
    """Raise DRF's 429 (with ``Retry-After``) when this client is locked out."""
    wait = locked_for(request)
    if wait:
        raise exceptions.Throttled(wait=wait, detail=f"Too many failed logins; try again in {wait} seconds.")


@receiver(user_login_failed)
def _count_failed_login(sender, credentials, request=None, **kwargs) -> None:
    if request is not None:
        record_failure(request)


class LockoutModelBackend(ModelBackend):
    """Django's password backend, refusing (before hashing anything) a client that is locked out."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is not None and locked_for(request):
            raise PermissionDenied("too many failed logins")
        return super().authenticate(request, username=username, password=password, **kwargs)
