"""Django's error views (``handler400`` ... ``handler500``), answering JSON under ``/api/``.

DRF answers the errors it raises itself; these cover what happens outside a DRF view or before it
can parse: an unknown URL, a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (413), an uncaught exception
(500, logged with its traceback by ``django.request``). Each JSON answer carries the request id that
the log lines of the same request carry (``config.middleware.RequestIDMiddleware``). Pages outside
``/api/`` (the admin) keep Django's HTML views.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views import defaults

API_PREFIX = "/api/"


def json_error(request: HttpRequest, status: int, detail: str) -> JsonResponse:
    """The body of every error the platform answers outside DRF: ``{"detail", "request_id"}``."""
    return JsonResponse({"detail": detail, "request_id": getattr(request, "id", None)}, status=status)


def bad_request(request: HttpRequest, exception: Exception, template_name: str = "400.html"):
    """400, or 413 when the body was over the upload limit."""
    if not request.path.startswith(API_PREFIX):
        return defaults.bad_request(request, exception, template_name)
    if isinstance(exception, RequestDataTooBig):
        limit_mb = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)
        return json_error(request, 413, f"Request body larger than {limit_mb} MB.")
    return json_error(request, 400, "Bad request.")


def permission_denied(request: HttpRequest, exception: Exception, template_name: str = "403.html"):
    """403."""
    if not request.path.startswith(API_PREFIX):
        return defaults.permission_denied(request, exception, template_name)
    return json_error(request, 403, "You do not have permission to perform this action.")


def page_not_found(request: HttpRequest, exception: Exception, template_name: str = "404.html"):
    """404."""
    if not request.path.startswith(API_PREFIX):
        return defaults.page_not_found(request, exception, template_name)
    return json_error(request, 404, "Not found.")


def server_error(request: HttpRequest, template_name: str = "500.html"):
    """500; the traceback is already in the log, under the same request id."""
    if not request.path.startswith(API_PREFIX):
        return defaults.server_error(request, template_name)
    return json_error(request, 500, "Internal server error; the log has the traceback under this request id.")
