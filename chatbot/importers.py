"""Importers for the intent datasets BANKING77 and CLINC150: intents and their labelled examples."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from catalog.importers import DatasetError, ImportOptions, insert_new, read_csv, text_field
from chatbot.models import Intent, IntentExample
from chatbot.services import schedule_prototypes

logger = logging.getLogger(__name__)

OUT_OF_SCOPE = "oos"  # CLINC150's label for messages no intent covers


@dataclass
class Example:
    """One labelled message read from a file."""

    intent: str
    domain: str
    text: str
    split: str
    source: str


def import_banking77(data_dir: Path, options: ImportOptions) -> dict[str, int]:
    """Import BANKING77's train.csv (``text``, ``category``) as training examples of 77 intents.

    Every category must be one of categories.json's (a misspelt label would become a 78th
    intent); a folder without categories.json is imported unchecked, with a warning. Texts are
    stripped: four messages repeat another but for surrounding newlines and are stored once
    (9,999 examples from 10,003 rows).
    """
    path = data_dir / "train.csv"
    categories = read_categories(data_dir / "categories.json")
    examples = []
    for line, row in read_csv(path, ["text", "category"], options):
        category = text_field(path, line, row, "category", max_length=90)
        if categories is not None and category not in categories:
            raise DatasetError(path, line, f"category {category!r} is not listed in categories.json")
        text = text_field(path, line, row, "text", max_length=10_000)
        examples.append(
            Example(
                intent=category, domain="", text=text, split=IntentExample.Split.TRAIN, source="banking77/train.csv"
            )
        )
    return save_examples("banking77", examples, options)


def read_categories(path: Path) -> frozenset[str] | None:
    """The category names listed in BANKING77's categories.json, or None (and a warning) without one.

    A missing file is a warning, not an error: ``split_dataset banking77`` writes train folders
    without it, and those import as before. A malformed file is a DatasetError.
    """
    if not path.exists():
        logger.warning("%s not found: the categories of train.csv are not checked", path)
        return None
    try:
        names = json.loads(path.read_bytes())
    except UnicodeDecodeError as exc:
        raise DatasetError(path, None, f"not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(path, exc.lineno, f"not JSON ({exc.msg})") from None
    if not isinstance(names, list) or not all(isinstance(name, str) and name.strip() for name in names):
        raise DatasetError(path, None, "expected a JSON list of category names")
    return frozenset(names)


def import_clinc150(data_dir: Path, options: ImportOptions) -> dict[str, int]:
    """Import CLINC150's train.csv and val.csv (150 intents in 10 domains, plus the out-of-scope ``oos``)."""
    examples = []
    for split, source_splits in (
        (IntentExample.Split.TRAIN, {"train", "oos_train"}),
        (IntentExample.Split.VAL, {"val", "oos_val"}),
    ):
        path = data_dir / f"{split}.csv"
        for line, row in read_csv(path, ["text", "intent", "domain", "source_split"], options):
            if row["source_split"] not in source_splits:
                raise DatasetError(
                    path, line, f"source_split {row['source_split']!r} is not one of {sorted(source_splits)}"
                )
            examples.append(
                Example(
                    intent=text_field(path, line, row, "intent", max_length=90),
                    domain=text_field(path, line, row, "domain", max_length=100),
                    text=text_field(path, line, row, "text", max_length=10_000),
                    split=split,
                    source=f"clinc150/{split}.csv",
                )
            )
    return save_examples("clinc150", examples, options)


def save_examples(dataset: str, examples: list[Example], options: ImportOptions) -> dict[str, int]:
    """Create the missing intents of ``dataset`` and examples; return how many of each were created.

    Intent names are unique across datasets, so an intent whose name another dataset already
    owns is stored as ``<dataset>:<name>`` (BANKING77 and CLINC150 share ``exchange_rate``: the
    dataset imported second gets the prefix). Training filters by ``Intent.dataset``, so labels
    stay consistent within one dataset. New examples get their intents' prototypes on the active
    backbone in the background (on commit), so the intents answer before any training. Call
    inside a transaction.
    """
    domains: dict[str, str] = {}
    for example in examples:
        domains.setdefault(example.intent, example.domain)
    owners = dict(Intent.objects.values_list("name", "dataset"))
    names = {intent: intent_name(dataset, intent, owners) for intent in domains}
    created_intents = insert_new(
        Intent,
        (
            Intent(name=names[intent], dataset=dataset, domain=domain, is_out_of_scope=intent == OUT_OF_SCOPE)
            for intent, domain in domains.items()
        ),
        ("name",),
        options,
    )
    intent_ids = dict(Intent.objects.filter(name__in=names.values()).values_list("name", "id"))
    created_examples = insert_new(
        IntentExample,
        (
            IntentExample(intent_id=intent_ids[names[e.intent]], text=e.text, split=e.split, source=e.source)
            for e in examples
        ),
        ("intent_id", "text", "split"),
        options,
        stored=IntentExample.objects.filter(intent__dataset=dataset),
    )
    if created_examples:
        schedule_prototypes()
    return {"intents": created_intents, "examples": created_examples}


def intent_name(dataset: str, intent: str, owners: dict[str, str]) -> str:
    """The stored name of ``dataset``'s ``intent``: plain, unless another dataset owns it (``owners``: name -> dataset)."""
    qualified = f"{dataset}:{intent}"
    if owners.get(qualified) == dataset or owners.get(intent, dataset) != dataset:
        return qualified
    return intent
