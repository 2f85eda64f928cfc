"""Importers for the intent datasets BANKING77 and CLINC150: intents and their labelled examples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from catalog.importers import DatasetError, ImportOptions, insert_new, read_csv, text_field
from chatbot.models import Intent, IntentExample
from chatbot.services import schedule_prototypes

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

    Texts are stripped: four messages repeat another but for surrounding newlines and are stored
    once (9,999 examples from 10,003 rows).
    """
    path = data_dir / "train.csv"
    examples = [
        Example(
            intent=text_field(path, line, row, "category", max_length=90),
            domain="",
            text=text_field(path, line, row, "text", max_length=10_000),
            split=IntentExample.Split.TRAIN,
            source="banking77/train.csv",
        )
        for line, row in read_csv(path, ["text", "category"], options)
    ]
    return save_examples("banking77", examples, options)


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
