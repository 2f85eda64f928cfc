"""Importer for the iPinYou demo sample: ad impressions with click labels."""

from __future__ import annotations

from pathlib import Path

from ads.models import AdImpression
from catalog.importers import DatasetError, ImportOptions, insert_new, parse_field, read_csv, text_field

DATASET = "ipinyou"
FIELDS = [
    "weekday",
    "hour",
    "useragent",
    "IP",
    "region",
    "city",
    "adexchange",
    "domain",
    "slotid",
    "slotwidth",
    "slotheight",
    "slotvisibility",
    "slotformat",
    "creative",
    "advertiser",
    "slotprice",
]


def import_ipinyou(data_dir: Path, options: ImportOptions) -> dict[str, int]:
    """Import impressions.csv as ``AdImpression`` ``ipinyou:<row_id>``; features hold the 16 fields and source_file.

    Feature values stay strings (they are categories, ``other`` and ``null`` included).
    """
    path = data_dir / "impressions.csv"
    impressions = []
    for line, row in read_csv(path, ["row_id", "source_file", "click", *FIELDS], options):
        row_id = parse_field(path, line, row, "row_id", int)
        if row["click"] not in ("0", "1"):
            raise DatasetError(path, line, f"column 'click': expected 0 or 1, found {row['click']!r}")
        features = {field: text_field(path, line, row, field, max_length=200) for field in FIELDS}
        features["source_file"] = text_field(path, line, row, "source_file", max_length=20)
        impressions.append(
            AdImpression(
                external_id=f"{DATASET}:{row_id}", dataset=DATASET, clicked=row["click"] == "1", features=features
            )
        )
    created = insert_new(AdImpression, impressions, ("external_id",), options)
    return {"impressions": created}
