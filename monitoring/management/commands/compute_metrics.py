"""``manage.py compute_metrics [--since DATE] [--until DATE] [--granularity hour|day]``: (re)compute
the online metrics' hourly or daily rows over a range, with a progress bar (idempotent)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date
from tqdm import tqdm

from monitoring import services
from monitoring.models import MetricValue


def _day(text: str) -> datetime:
    parsed = parse_date(text)
    if parsed is None:
        raise CommandError(f"not a date (YYYY-MM-DD): {text!r}")
    return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)


class Command(BaseCommand):
    help = "Recompute the online metrics of each hour or day in a range (default: the last 7 days)."

    def add_arguments(self, parser):
        parser.add_argument("--since", type=_day, help="First day (UTC), default 7 days ago.")
        parser.add_argument("--until", type=_day, help="Day after the last (UTC), default now.")
        parser.add_argument("--granularity", choices=MetricValue.Granularity.values, default="day")

    def handle(self, *args, since, until, granularity, **options):
        until = until or timezone.now()
        since = since or until - timedelta(days=7)
        if since >= until:
            raise CommandError("--since must be before --until")
        total = services.buckets_between(since, until, granularity)
        with tqdm(total=total, unit=granularity, disable=options["verbosity"] == 0) as bar:
            stored = services.backfill(since=since, until=until, granularity=granularity, progress=bar.update)
        self.stdout.write(f"{stored} metric rows in {total} {granularity}s from {since:%Y-%m-%d %H:%M} UTC")
