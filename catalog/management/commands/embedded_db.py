"""``manage.py embedded_db start|stop|url``: control the embedded PostgreSQL of STATE_DIR."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config import embedded


class Command(BaseCommand):
    help = "Start, stop or locate the embedded PostgreSQL (used when DATABASE_URL is unset)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["start", "stop", "url"])

    def handle(self, *args, action, **options):
        if settings.DATABASE_URL:
            raise CommandError("DATABASE_URL is set: the embedded PostgreSQL is not in use")
        if action == "stop":
            stopped = embedded.stop_server(settings.STATE_DIR)
            self.stdout.write("stopped" if stopped else "not running")
            return
        self.stdout.write(embedded.database_url(settings.STATE_DIR, settings.DATABASES["default"]["NAME"]))
