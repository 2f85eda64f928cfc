"""PostgreSQL backend that starts the embedded server before its first connection.

Used when ``DATABASE_URL`` is unset. Starting lazily keeps ``import settings`` free of
side effects, and every process (web, worker, commands, tests) shares one server.
"""

from __future__ import annotations

from django.conf import settings
from django.db.backends.postgresql import base

from config import embedded


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        params = super().get_connection_params()
        params["host"] = embedded.ensure_server(settings.STATE_DIR)
        return params
