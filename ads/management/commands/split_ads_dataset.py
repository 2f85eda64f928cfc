"""``manage.py split_ads_dataset movielens_ctr|ipinyou --data-dir DIR --out DIR``: a dev split to tune on.

Writes ``OUT/train`` (laid out like the dataset folder) and ``OUT/test`` (the held-out rows),
so that ``evaluate ads --train-dir OUT/train --test-dir OUT/test`` never sees the real test set.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ads.evaluation import split_ipinyou, split_movielens


class Command(BaseCommand):
    help = "Carve a dev train/test split out of a shared dataset folder (MovieLens: latest ratings per user; iPinYou: last rows)."

    def add_arguments(self, parser):
        parser.add_argument("dataset", choices=["movielens_ctr", "ipinyou"])
        parser.add_argument("--data-dir", required=True, type=Path)
        parser.add_argument("--out", required=True, type=Path)
        parser.add_argument("--per-user", type=int, default=3, help="MovieLens: latest ratings per user held out.")
        parser.add_argument("--fraction", type=float, default=0.2, help="iPinYou: last fraction of rows held out.")

    def handle(self, *args, dataset, data_dir, out, per_user, fraction, **options):
        if not data_dir.is_dir():
            raise CommandError(f"--data-dir {data_dir} is not a folder")
        try:
            if dataset == "movielens_ctr":
                counts = split_movielens(data_dir, out, per_user=per_user)
            else:
                counts = split_ipinyou(data_dir, out, fraction=fraction)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(counts))
