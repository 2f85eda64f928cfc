"""``manage.py split_interactions movielens|online_retail --data-dir DIR --out OUT``.

Writes OUT/train and OUT/test laid out like ``../shared/data/NAME/``, holding out each customer's
last interaction (MovieLens) or last basket (Online Retail) by the same rule as the shared data's
own holdout (see ``recommend.datasets``). Run it on the shared data to get a train + dev-test
pair, and again on that train side for a dev split to tune on.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from recommend import datasets


class Command(BaseCommand):
    help = "Hold out each customer's last interaction/basket: write OUT/train and OUT/test."

    def add_arguments(self, parser):
        parser.add_argument("dataset", choices=datasets.DATASETS)
        parser.add_argument("--data-dir", required=True, type=Path)
        parser.add_argument("--out", required=True, type=Path)
        parser.add_argument("--seed", type=int, default=7, help="Unused: the split is deterministic (by time).")

    def handle(self, *args, dataset, data_dir, out, seed, **options):
        if not data_dir.is_dir():
            raise CommandError(f"--data-dir {data_dir} is not a folder")
        try:
            counts = datasets.SPLITTERS[dataset](data_dir, out)
        except datasets.DatasetInputError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps({"dataset": dataset, "out": str(out), **counts}))
