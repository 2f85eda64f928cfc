"""Helpers for importer tests: run ``import_dataset`` and cut real files down."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

from django.core.management import call_command


def import_dataset(name: str, folder: Path, limit: int | None = None) -> dict:
    """Run the command and return its JSON counts."""
    out = StringIO()
    args = ["--limit", str(limit)] if limit else []
    call_command("import_dataset", name, "--data-dir", str(folder), "--no-progress", *args, stdout=out)
    return json.loads(out.getvalue())


def copy_head(source: Path, target: Path, lines: int, extra: str = "") -> None:
    """Write the first ``lines`` lines of ``source`` (header included) to ``target``, then ``extra``."""
    with open(source, encoding="utf-8") as fh:
        head = [next(fh) for _ in range(lines)]
    target.write_text("".join(head) + extra, encoding="utf-8")
