"""What the evaluators behind ``manage.py evaluate`` share: reading their dataset folders and logging.

The four evaluators (``search``, ``recommend``, ``chatbot``, ``ads``; each app's
``evaluation.py``) read CSV files of a train and a test folder with :func:`read_table` (the
catalogue importers' reader: UTF-8, every row the header's width), report unusable input with
:class:`EvaluationInputError` (the command answers it with a ``CommandError``) and write progress
with :func:`log` on stderr, since stdout carries the command's one JSON object. Their metrics are
:mod:`backbone.metrics`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from catalog.importers import DatasetError, read_csv_table


class EvaluationInputError(ValueError):
    """An evaluation cannot use its input: a dataset folder lacks a file or a column, holds a malformed
    row, or the STATE_DIR is not one the evaluation can run on (search: a catalogue that is not empty)."""


def read_table(path: Path, required: list[str]) -> list[dict[str, str]]:
    """Return the rows of the UTF-8 CSV ``path``, which must have the ``required`` columns.

    Raises :class:`EvaluationInputError` naming the file (and the missing columns, or the bad line).
    """
    try:
        _, rows = read_csv_table(Path(path), required)
    except DatasetError as exc:
        raise EvaluationInputError(str(exc)) from None
    return rows


def log(message: str) -> None:
    """Write one progress line on stderr, at once."""
    print(message, file=sys.stderr, flush=True)
