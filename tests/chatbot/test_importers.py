"""BANKING77 and CLINC150 importers on the real files: intents, splits, name clashes, idempotence."""

from __future__ import annotations

import json
import logging

import pytest
from django.core.management import CommandError

from chatbot.models import Intent, IntentExample
from tests.importing import import_dataset

pytestmark = pytest.mark.django_db


def stored_counts() -> tuple[int, int]:
    """Rows stored in the tables this importer fills."""
    return Intent.objects.count(), IntentExample.objects.count()


def test_banking77_import_creates_77_intents_of_training_examples(data_dir):
    counts = import_dataset("banking77", data_dir / "banking77")

    # 10,003 rows; four repeat another message but for surrounding newlines.
    assert (counts["intents"], counts["examples"]) == (77, 9_999)
    assert stored_counts() == (77, 9_999)
    assert set(IntentExample.objects.values_list("split", "source").distinct()) == {("train", "banking77/train.csv")}
    assert Intent.objects.get(name="card_arrival").dataset == "banking77"
    assert not Intent.objects.filter(is_out_of_scope=True).exists()


def test_clinc150_import_keeps_its_splits_and_marks_out_of_scope(data_dir):
    counts = import_dataset("clinc150", data_dir / "clinc150")

    assert (counts["intents"], counts["examples"]) == (151, 18_200)
    assert IntentExample.objects.filter(split="train", source="clinc150/train.csv").count() == 15_100
    assert IntentExample.objects.filter(split="val", source="clinc150/val.csv").count() == 3_100
    assert list(Intent.objects.filter(is_out_of_scope=True).values_list("name", flat=True)) == ["oos"]
    assert Intent.objects.get(name="translate").domain == "travel"


def test_intent_name_another_dataset_owns_gets_the_dataset_prefix(data_dir):
    import_dataset("banking77", data_dir / "banking77")
    import_dataset("clinc150", data_dir / "clinc150")

    assert Intent.objects.get(name="exchange_rate").dataset == "banking77"
    assert Intent.objects.get(name="clinc150:exchange_rate").dataset == "clinc150"
    assert Intent.objects.get(name="translate").dataset == "clinc150"  # no clash: plain name


def test_second_import_adds_nothing(data_dir):
    import_dataset("banking77", data_dir / "banking77", limit=2000)
    import_dataset("clinc150", data_dir / "clinc150", limit=2000)
    before = stored_counts()

    again = [import_dataset(name, data_dir / name, limit=2000) for name in ("banking77", "clinc150")]

    assert [(c["intents"], c["examples"]) for c in again] == [(0, 0), (0, 0)]
    assert stored_counts() == before


def test_row_from_the_wrong_split_aborts_the_import_naming_file_and_line(tmp_path):
    header = "text,intent,domain,source_split\n"
    (tmp_path / "train.csv").write_text(header + "how do i say hi in french,translate,travel,train\n")
    (tmp_path / "val.csv").write_text(
        header + "in spanish please,translate,travel,val\nhello,greeting,small_talk,test\n"
    )

    with pytest.raises(CommandError, match=r"nothing imported: .*val\.csv, line 3: source_split 'test'"):
        import_dataset("clinc150", tmp_path)

    assert stored_counts() == (0, 0)


def test_row_with_a_missing_field_aborts_the_import(tmp_path):
    (tmp_path / "train.csv").write_text("text,category\nwhere is my card?,card_arrival\nno label here\n")

    with pytest.raises(CommandError, match=r"train\.csv, line 3: expected 2 fields"):
        import_dataset("banking77", tmp_path)

    assert stored_counts() == (0, 0)


def write_banking77(folder, rows: str, categories: list[str] | None = None) -> None:
    """A tiny BANKING77 folder: train.csv with ``rows`` under its header, and categories.json if given."""
    (folder / "train.csv").write_text("text,category\n" + rows, encoding="utf-8")
    if categories is not None:
        (folder / "categories.json").write_text(json.dumps(categories), encoding="utf-8")


def test_category_missing_from_categories_json_aborts_the_import_naming_file_and_line(tmp_path):
    write_banking77(
        tmp_path, "where is my card?,card_arrival\nmy pin is blocked,pin_blockd\n", ["card_arrival", "pin_blocked"]
    )

    with pytest.raises(
        CommandError,
        match=r"nothing imported: .*train\.csv, line 3: category 'pin_blockd' is not listed in categories\.json",
    ):
        import_dataset("banking77", tmp_path)

    assert stored_counts() == (0, 0)


def test_categories_json_is_only_checked_against_not_imported_as_intents(tmp_path):
    write_banking77(tmp_path, "where is my card?,card_arrival\n", ["card_arrival", "pin_blocked"])

    counts = import_dataset("banking77", tmp_path)

    assert (counts["intents"], counts["examples"]) == (1, 1)
    assert list(Intent.objects.values_list("name", flat=True)) == ["card_arrival"]


def test_folder_without_categories_json_imports_with_a_warning(tmp_path, caplog):
    write_banking77(tmp_path, "where is my card?,card_arrival\n")

    with caplog.at_level(logging.WARNING, logger="chatbot.importers"):
        counts = import_dataset("banking77", tmp_path)

    assert (counts["intents"], counts["examples"]) == (1, 1)
    [record] = [r for r in caplog.records if r.name == "chatbot.importers"]
    assert record.levelno == logging.WARNING
    assert "categories.json" in record.getMessage() and "not checked" in record.getMessage()


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ('[\n  "card_arrival",\n  oops\n]', r"categories\.json, line 3: not JSON"),
        ('{"card_arrival": 1}', r"categories\.json: expected a JSON list of category names"),
        ('["card_arrival", ""]', r"categories\.json: expected a JSON list of category names"),
    ],
)
def test_malformed_categories_json_aborts_the_import_naming_the_file(tmp_path, content, error):
    write_banking77(tmp_path, "where is my card?,card_arrival\n")
    (tmp_path / "categories.json").write_text(content, encoding="utf-8")

    with pytest.raises(CommandError, match=f"nothing imported: .*{error}"):
        import_dataset("banking77", tmp_path)

    assert stored_counts() == (0, 0)
