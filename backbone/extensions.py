"""Migration operation that creates a PostgreSQL extension or stops with a clear message."""

from __future__ import annotations

from django.core.management.base import CommandError
from django.db import migrations


class RequireExtension(migrations.RunSQL):
    """``CREATE EXTENSION IF NOT EXISTS name``, failing clearly when the server lacks it."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(f"CREATE EXTENSION IF NOT EXISTS {name}", reverse_sql=migrations.RunSQL.noop)

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        with schema_editor.connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", [self.name])
            if cursor.fetchone() is None:
                # CommandError: manage.py migrate prints the message alone, without a traceback.
                raise CommandError(
                    f"PostgreSQL extension '{self.name}' is not available on the server at DATABASE_URL. "
                    f"Install pgvector there, or unset DATABASE_URL "
                    f"to use the embedded PostgreSQL, which ships it."
                )
        super().database_forwards(app_label, schema_editor, from_state, to_state)

    def describe(self):
        return f"Require the PostgreSQL extension {self.name}"
