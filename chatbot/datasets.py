"""Splitting an intent dataset folder (laid out like ``../shared/data/banking77/`` or ``clinc150/``).

Behind ``manage.py split_dataset banking77|clinc150``: carves a held-out ``test.csv`` out of the
folder's ``train.csv`` (stratified by intent, seeded) so that ``evaluate intents`` has a test
folder: writes ``OUT/train/train.csv`` (the rest; for clinc150 also a copy of ``val.csv``) and
``OUT/test/test.csv``. Run it again on OUT/train to get a dev split for tuning.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from catalog.importers import read_csv_table, write_csv_table
from chatbot.ml import stratified_split

LABEL_COLUMN = {"banking77": "category", "clinc150": "intent"}


def split_examples(
    rows: list[dict[str, str]], label_column: str, fraction: float, seed: int
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Stratified (kept, held-out) split of CSV rows by ``label_column``."""
    kept, held = stratified_split([r[label_column] for r in rows], fraction, seed)
    return [rows[i] for i in kept], [rows[i] for i in held]


def split_intents(data_dir: Path, out: Path, test_fraction: float, seed: int, *, dataset: str) -> dict[str, int]:
    """Write OUT/train/train.csv (and val.csv, copied) and OUT/test/test.csv: a stratified ``test_fraction``."""
    fieldnames, rows = read_csv_table(data_dir / "train.csv", [LABEL_COLUMN[dataset]])
    kept, held = split_examples(rows, LABEL_COLUMN[dataset], test_fraction, seed)
    write_csv_table(out / "train" / "train.csv", fieldnames, kept)
    write_csv_table(out / "test" / "test.csv", fieldnames, held)
    if (data_dir / "val.csv").exists():
        shutil.copyfile(data_dir / "val.csv", out / "train" / "val.csv")
    return {"train": len(kept), "test": len(held)}
