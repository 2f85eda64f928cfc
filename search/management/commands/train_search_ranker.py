"""``manage.py train_search_ranker``: fit the learned ranker of the active version on the live catalogue."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from search import services


class Command(BaseCommand):
    help = "Fit the search ranker (LightGBM lambdarank) of the active backbone version on judged queries and clicks."

    def add_arguments(self, parser):
        parser.add_argument("--max-queries", type=int, default=3000)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, max_queries, seed, **options):
        try:
            folder = services.train_ranker(max_queries=max_queries, seed=seed)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(folder))
