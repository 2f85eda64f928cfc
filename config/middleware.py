"""Request ids: every request gets one, every log line of it carries it, the answer says it."""

from __future__ import annotations

import re

from log_request_id.middleware import RequestIDMiddleware as _RequestIDMiddleware

# An id from the proxy in front (X-Request-ID) is kept only if it is short and plain: it goes into log lines.
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestIDMiddleware(_RequestIDMiddleware):
    """django-log-request-id's middleware, trusting an incoming ``X-Request-ID`` only if it is safe to log."""

    def _get_request_id(self, request) -> str:
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        return incoming if SAFE_REQUEST_ID.fullmatch(incoming) else self._generate_id()
