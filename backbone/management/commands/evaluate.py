"""``manage.py evaluate TASK --dataset NAME --train-dir DIR --test-dir DIR [--json FILE]``.

Runs the evaluator an app registered for TASK (``backbone.registry.register_evaluator``) and
prints ONE JSON object on stdout: ``task``, ``dataset``, ``n``, ``metrics`` (the project's model),
``baselines`` (name -> metrics, computed in the same run) and any extra keys the evaluator adds.
Progress and logs go to stderr.

The evaluation never changes the operator's data: the evaluator runs inside a transaction that
is always rolled back, so even a stray write to the catalogue or the model versions vanishes.
Evaluators read their folders with :func:`backbone.evaluation.read_table` and report unusable
input (a missing file or column) with :class:`backbone.evaluation.EvaluationInputError` (a
``ValueError``); the command turns any ``ValueError`` or ``FileNotFoundError`` into a ``CommandError``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from backbone import registry

REQUIRED_KEYS = ("n", "metrics", "baselines")


def find_evaluator(task: str, dataset: str) -> registry.Evaluator:
    """Return the evaluator registered for ``task`` that supports ``dataset``, or raise CommandError."""
    evaluator = registry.EVALUATORS.get(task)
    if evaluator is None:
        known = ", ".join(sorted(registry.EVALUATORS)) or "none"
        raise CommandError(f"unknown task {task!r}; tasks with an evaluator: {known}")
    if dataset not in evaluator.datasets:
        raise CommandError(
            f"task {task!r} cannot be evaluated on dataset {dataset!r}; supported: {', '.join(evaluator.datasets)}"
        )
    return evaluator


def check_folder(flag: str, path: Path) -> Path:
    """Return ``path`` if it is a folder, else raise CommandError naming ``flag``."""
    if not path.is_dir():
        raise CommandError(f"{flag} {path} is not a folder")
    return path


def parse_extra(pairs: list[str]) -> dict[str, Any]:
    """Return ``--set KEY=VALUE`` pairs as a dict; values are JSON when they parse, else strings."""
    extra: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            extra[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            extra[key.strip()] = value
    return extra


def run_without_writes(evaluator: registry.Evaluator, **kwargs: Any) -> dict[str, Any]:
    """Run ``evaluator`` inside a transaction that is always rolled back; return its result."""
    with transaction.atomic():
        try:
            return evaluator.run(**kwargs)
        finally:
            transaction.set_rollback(True)


def build_report(task: str, dataset: str, result: dict[str, Any]) -> dict[str, Any]:
    """Return the printed object: task and dataset first, then the evaluator's keys (checked)."""
    missing = [key for key in REQUIRED_KEYS if key not in result]
    if missing:
        raise CommandError(f"the {task!r} evaluator returned no {missing}")
    return {"task": task, "dataset": dataset, **result}


class Command(BaseCommand):
    help = "Train on one folder, measure on another; print the model's and the baselines' metrics as one JSON object."

    def add_arguments(self, parser):
        """Declare TASK, the dataset folders, the output file and the quick-run limits."""
        parser.add_argument("task", help="Task with a registered evaluator, e.g. search")
        parser.add_argument("--dataset", required=True, help="Dataset name, e.g. homedepot")
        parser.add_argument("--train-dir", required=True, type=Path)
        parser.add_argument("--test-dir", required=True, type=Path)
        parser.add_argument("--json", type=Path, default=None, help="Also write the JSON object to this file.")
        parser.add_argument("--limit-products", type=int, default=None, help="Index at most N products (quick runs).")
        parser.add_argument("--limit-queries", type=int, default=None, help="Evaluate at most N test queries.")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--set",
            dest="extra",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Evaluator-specific option (repeatable), e.g. --set epochs=2. Values are parsed as JSON when they can be.",
        )

    def handle(self, *args, task, dataset, train_dir, test_dir, **options):
        """Evaluate, print the report on stdout, optionally write it to ``--json``."""
        evaluator = find_evaluator(task, dataset)
        check_folder("--train-dir", train_dir)
        check_folder("--test-dir", test_dir)
        for flag in ("limit_products", "limit_queries"):
            if options[flag] is not None and options[flag] < 1:
                raise CommandError(f"--{flag.replace('_', '-')} must be at least 1")
        run_options = {key: options[key] for key in ("limit_products", "limit_queries", "seed")}
        run_options.update(parse_extra(options["extra"]))
        if settings.BACKBONE_TORCH_THREADS:  # as the worker does: the machine is shared
            import torch

            torch.set_num_threads(settings.BACKBONE_TORCH_THREADS)
        started = time.monotonic()
        try:
            result = run_without_writes(
                evaluator, dataset=dataset, train_dir=train_dir, test_dir=test_dir, options=run_options
            )
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(f"cannot evaluate {task} on {dataset}: {exc}") from None
        report = build_report(task, dataset, result)
        report.setdefault("seconds", round(time.monotonic() - started, 1))
        json_file: Path | None = options["json"]
        if json_file is not None:
            json_file.parent.mkdir(parents=True, exist_ok=True)
            json_file.write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {json_file}", file=sys.stderr)
        self.stdout.write(json.dumps(report))
