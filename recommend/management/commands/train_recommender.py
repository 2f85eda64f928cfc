"""``manage.py train_recommender [--set key=value ...] [--no-activate]``: train now, in this process.

The same work as the ``recommend.train`` Celery task (which the API and the admin queue), for
operators without a worker at hand and for benchmarks. Prints the new model's row as JSON.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from backbone.management.commands.evaluate import parse_extra
from recommend import services


class Command(BaseCommand):
    help = "Train a recommender from the events in the database now (no worker needed); activate it."

    def add_arguments(self, parser):
        parser.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--no-activate", action="store_true")

    def handle(self, *args, extra, no_activate, **options):
        try:
            row = services.start_training(parameters=parse_extra(extra), activate=not no_activate, enqueue=False)
        except services.RecommendError as exc:
            raise CommandError(str(exc)) from None
        row = services.train_model(model_id=row.pk)
        if row.state == row.State.FAILED:
            raise CommandError(f"training failed: {row.error}")
        self.stdout.write(json.dumps({"name": row.name, "state": row.state, "metrics": row.metrics}))
