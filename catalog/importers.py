"""Dataset importers behind ``manage.py import_dataset NAME --data-dir DIR``.

Each importer reads one folder laid out like ``../shared/data/NAME/``, validates every row
before writing (a malformed row raises :class:`DatasetError` naming file and line), and
writes in one transaction (the command's), so a failed import leaves nothing behind. Rows
carry natural keys, so a second run adds nothing.

Apps register their own importers here in ``AppConfig.ready`` (the catalogue does not import them).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import models
from tqdm import tqdm

IMPORTERS: dict[str, Callable[..., dict[str, int]]] = {}


class DatasetError(Exception):
    """A dataset file is missing or malformed; the message names the file and line."""

    def __init__(self, path: Path | str, line: int | None, message: str):
        self.path, self.line = Path(path), line
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {message}")


@dataclass
class ImportOptions:
    """Options common to every importer."""

    limit: int | None = None  # read at most this many data rows per file (tests, quick tries)
    progress: bool = True


def register(name: str, importer: Callable[..., dict[str, int]]) -> None:
    """Register ``importer(data_dir: Path, options: ImportOptions) -> counts``."""
    IMPORTERS[name] = importer


def read_csv(path: Path, required: list[str], options: ImportOptions) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) of a UTF-8 CSV after checking its header has ``required`` columns.

    Line numbers are physical lines of the file (header = line 1), so quoted newlines count.
    """
    if not path.exists():
        raise DatasetError(path, None, "file not found")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(path, 1, f"missing columns {missing}; found {reader.fieldnames}")
        total = None
        rows = tqdm(reader, desc=path.name, unit=" rows", disable=not options.progress, total=total, mininterval=1.0)
        for count, row in enumerate(rows, start=1):
            if options.limit is not None and count > options.limit:
                break
            if None in row or any(row[c] is None for c in required):
                raise DatasetError(path, reader.line_num, f"expected {len(reader.fieldnames)} fields")
            yield reader.line_num, row


def parse_field(path: Path, line: int, row: dict[str, str], column: str, kind: Callable[[str], Any]) -> Any:
    """Convert ``row[column]`` with ``kind`` or raise a DatasetError naming file, line and column."""
    try:
        return kind(row[column])
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise DatasetError(path, line, f"column {column!r}: cannot read {row[column]!r} ({exc})") from None


def progress_bar(iterable, options: ImportOptions, **kwargs):
    """Wrap ``iterable`` in a tqdm bar unless progress is off."""
    return tqdm(iterable, disable=not options.progress, mininterval=1.0, **kwargs)
