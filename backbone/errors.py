"""The project's service exceptions, and the one DRF exception handler that answers them in JSON.

Services raise one of the three kinds below and know nothing of HTTP; views let them propagate, and
:func:`exception_handler` (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``) maps the kind to a status:

- :class:`InvalidInput` -> 400 ``{field: [message]}`` (the shape of DRF's validation errors);
- :class:`NotFound` -> 404 (:class:`UnknownReferences`: its messages per input) and :class:`Conflict` -> 409, ``{field: [message]}`` when the error names a
  field, else ``{"detail": message}``.
"""

from __future__ import annotations

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ServiceError(Exception):
    """A request that a service refuses; ``field`` names the input at fault (None: the request as a whole)."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_field: str | None = None

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field or self.default_field


class InvalidInput(ServiceError):
    """The input cannot be served as given (400)."""

    default_field = "non_field_errors"


class NotFound(ServiceError):
    """The request names something that does not exist (404)."""

    status_code = status.HTTP_404_NOT_FOUND


class UnknownReferences(NotFound):
    """Input that is well formed but names things that do not exist, per input (404), e.g.
    ``{"events": {"3": {"product": ["Unknown product SKU 'x'."]}}}``."""

    def __init__(self, errors: dict):
        super().__init__("unknown references")
        self.errors = errors


class Conflict(ServiceError):
    """The request is valid but the current state refuses it (409): already done, not in a state that allows it."""

    status_code = status.HTTP_409_CONFLICT


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler, plus the project's :class:`ServiceError` kinds as JSON answers."""
    if isinstance(exc, UnknownReferences):
        return Response(exc.errors, status=exc.status_code)
    if isinstance(exc, ServiceError):
        body = {exc.field: [str(exc)]} if exc.field else {"detail": str(exc)}
        return Response(body, status=exc.status_code)
    return drf_exception_handler(exc, context)
