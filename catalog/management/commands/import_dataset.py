"""``manage.py import_dataset NAME --data-dir DIR``: load a real dataset, all or nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from backbone.services import schedule_embedding_refresh
from catalog.importers import IMPORTERS, DatasetError, ImportOptions


class Command(BaseCommand):
    help = "Import a dataset folder (laid out like ../shared/data/NAME). Idempotent; all or nothing."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Dataset: " + ", ".join(sorted(IMPORTERS)))
        parser.add_argument("--data-dir", required=True, type=Path)
        parser.add_argument("--limit", type=int, default=None, help="Read at most N rows per file.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, name, data_dir, limit, no_progress, **options):
        if name not in IMPORTERS:
            raise CommandError(f"unknown dataset {name!r}; known: {', '.join(sorted(IMPORTERS))}")
        if not data_dir.is_dir():
            raise CommandError(f"--data-dir {data_dir} is not a folder")
        started = time.monotonic()
        try:
            with transaction.atomic():
                counts = IMPORTERS[name](data_dir, ImportOptions(limit=limit, progress=not no_progress))
                if counts.get("products"):
                    # New products get embeddings of the serving version in the background.
                    schedule_embedding_refresh()
        except DatasetError as exc:
            raise CommandError(f"nothing imported: {exc}") from None
        counts["seconds"] = round(time.monotonic() - started, 1)
        self.stdout.write(json.dumps({"dataset": name, **counts}))
