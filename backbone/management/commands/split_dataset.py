"""``manage.py split_dataset NAME --data-dir DIR --out OUT [--test-fraction F] [--seed S]``.

Carves a development split out of a dataset folder laid out like ``../shared/data/NAME/``:
``OUT/train`` is laid out like the source (import it, train on it, or split it again for a dev
split to tune on) and ``OUT/test`` holds the held-out part, so the pair can be handed to
``manage.py evaluate`` without touching the real holdout. Prints one JSON object: ``dataset``,
``out`` and the splitter's counts.

Each app registers its splitters (``backbone.registry.register_splitter``) in ``AppConfig.ready``;
``--help`` lists what each holds out. The splits by time (movielens, online_retail, movielens_ctr)
ignore ``--test-fraction`` and ``--seed``; ipinyou ignores ``--seed``.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backbone import registry
from catalog.importers import DatasetError


def find_splitter(name: str) -> registry.Splitter:
    """Return the splitter registered as ``name``, or raise CommandError naming the known ones."""
    splitter = registry.SPLITTERS.get(name)
    if splitter is None:
        raise CommandError(f"unknown dataset {name!r}; known: {', '.join(sorted(registry.SPLITTERS))}")
    return splitter


def check_folders(data_dir: Path, out: Path) -> None:
    """Raise CommandError unless ``data_dir`` is a folder and ``out`` lies outside it."""
    if not data_dir.is_dir():
        raise CommandError(f"--data-dir {data_dir} is not a folder")
    if out.resolve().is_relative_to(data_dir.resolve()):
        raise CommandError(f"--out {out} is inside --data-dir; write the split elsewhere")


class Command(BaseCommand):
    help = "Split a dataset folder into OUT/train and OUT/test (laid out like the source); print the counts as JSON."

    def add_arguments(self, parser):
        """Declare the dataset name, its folder, the output folder, the test fraction and the seed."""
        rules = "; ".join(f"{name}: {registry.SPLITTERS[name].rule}" for name in sorted(registry.SPLITTERS))
        parser.add_argument("name", metavar="NAME", help=f"Dataset. {rules}.")
        parser.add_argument("--data-dir", required=True, type=Path, help="The dataset folder.")
        parser.add_argument("--out", required=True, type=Path, help="Where OUT/train and OUT/test go.")
        parser.add_argument(
            "--test-fraction", type=float, default=0.2, help="Share held out, where the split is by share."
        )
        parser.add_argument("--seed", type=int, default=7, help="Seed, where the split is random.")

    def handle(self, *args, name, data_dir, out, test_fraction, seed, **options):
        """Write OUT/train and OUT/test with the registered splitter; print its summary as JSON."""
        splitter = find_splitter(name)
        check_folders(data_dir, out)
        if not 0.0 < test_fraction < 1.0:
            raise CommandError(f"--test-fraction must be between 0 and 1, got {test_fraction}")
        try:
            summary = splitter.split(data_dir, out, test_fraction, seed)
        except (DatasetError, FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps({"dataset": name, "out": str(out), **summary}))
