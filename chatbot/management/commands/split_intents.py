"""``manage.py split_intents --dataset banking77 --data-dir DIR --out DIR [--test-fraction F] [--seed S]``.

Carves a held-out ``test.csv`` out of a dataset's ``train.csv`` (stratified by intent, seeded)
so that ``evaluate intents`` has a test folder: writes ``OUT/train/train.csv`` (the rest; for
clinc150 also a copy of ``val.csv``) and ``OUT/test/test.csv``. Run it twice on OUT/train to
get a dev split for tuning.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from chatbot.evaluation import LABEL_COLUMN, split_examples


def write_rows(path: Path, fieldnames: list[str], rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


class Command(BaseCommand):
    help = "Carve a stratified, seeded test.csv out of an intent dataset's train.csv."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, choices=sorted(LABEL_COLUMN))
        parser.add_argument("--data-dir", required=True, type=Path)
        parser.add_argument("--out", required=True, type=Path)
        parser.add_argument("--test-fraction", type=float, default=0.2)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, dataset, data_dir, out, test_fraction, seed, **options):
        source = data_dir / "train.csv"
        if not source.exists():
            raise CommandError(f"{source} not found")
        if not 0 < test_fraction < 1:
            raise CommandError("--test-fraction must be between 0 and 1")
        with open(source, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fieldnames = list(reader.fieldnames or [])
            rows = list(reader)
        kept, held = split_examples(rows, LABEL_COLUMN[dataset], test_fraction, seed)
        write_rows(out / "train" / "train.csv", fieldnames, kept)
        write_rows(out / "test" / "test.csv", fieldnames, held)
        if (data_dir / "val.csv").exists():
            shutil.copyfile(data_dir / "val.csv", out / "train" / "val.csv")
        self.stdout.write(json.dumps({"train": len(kept), "test": len(held), "out": str(out)}))
