"""Reading recommendation dataset folders (laid out like ``../shared/data/NAME/``) and splitting them.

No ORM: the evaluator and ``manage.py split_dataset movielens|online_retail`` work on the CSV
files in memory (read and written with ``catalog.importers``' CSV helpers).

- ``movielens``: ``ratings.csv`` (every rating is an interaction), ``movies.csv`` (catalogue and
  item text: title, genres, tags from ``tags.csv``).
- ``online_retail``: ``transactions.csv`` purchase lines (the importer's rules: product codes,
  positive price, non-cancellation invoice, positive quantity) of identified customers are the
  interactions, one basket per invoice; anonymous invoices are kept as extra baskets (they teach
  co-occurrence, never evaluated); ``items.csv`` is the catalogue and item text.

Held-out rule (the same one the shared data's holdout used, see each dataset's README):
MovieLens holds out each user's last rating (largest timestamp, ties by the larger movieId);
Online Retail holds out, for customers with at least two purchase invoices, the last purchase
invoice (largest time, ties by InvoiceNo) with all of the customer's rows at or after its time.
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from catalog.importers import DatasetError, read_csv_table, write_csv_table

DATASETS = ("movielens", "online_retail")
PRODUCT_CODE = re.compile(r"^(\d|DCGS)")  # the catalogue importer's rule for real products


class DatasetInputError(ValueError):
    """A dataset folder lacks a file or a column."""


@dataclass
class Interactions:
    """Time-ordered interactions of named users with named items, plus the item catalogue and texts.

    ``user``/``item``/``time``/``basket`` are parallel lists; ``extra_baskets`` are anonymous baskets
    (lists of item keys) that only inform co-occurrence.
    """

    user: list[str] = field(default_factory=list)
    item: list[str] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    basket: list[str] = field(default_factory=list)
    catalogue: dict[str, str] = field(default_factory=dict)  # item key -> text
    categories: dict[str, str] = field(default_factory=dict)  # item key -> category (may be "")
    extra_baskets: list[list[str]] = field(default_factory=list)

    def histories(self) -> dict[str, list[tuple[float, str, str]]]:
        """Return user -> [(time, item, basket)] sorted by time (ties keep file order)."""
        out: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
        for u, i, t, b in zip(self.user, self.item, self.time, self.basket):
            out[u].append((t, i, b))
        for rows in out.values():
            rows.sort(key=lambda r: r[0])
        return dict(out)


def _open_rows(path: Path, required: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    try:
        return read_csv_table(path, required)
    except DatasetError as exc:
        raise DatasetInputError(str(exc)) from None


# --- MovieLens ------------------------------------------------------------------------------


def read_movielens(folder: Path, catalogue_dir: Path | None = None) -> Interactions:
    """Read ratings (and, from ``catalogue_dir`` or ``folder``, movies and tags) of a MovieLens folder."""
    data = Interactions()
    catalogue_dir = catalogue_dir or folder
    if (catalogue_dir / "movies.csv").exists():
        _, movies = _open_rows(catalogue_dir / "movies.csv", ["movieId", "title", "genres"])
        tags: dict[str, list[str]] = defaultdict(list)
        if (catalogue_dir / "tags.csv").exists():
            _, tag_rows = _open_rows(catalogue_dir / "tags.csv", ["movieId", "tag"])
            for row in tag_rows:
                tag = row["tag"].strip()
                if tag and tag.casefold() not in (t.casefold() for t in tags[row["movieId"]]):
                    tags[row["movieId"]].append(tag)
        for row in movies:
            genres = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"]
            text = " | ".join(p for p in [row["title"], " ".join(genres), ", ".join(tags[row["movieId"]][:10])] if p)
            data.catalogue[row["movieId"]] = text
            data.categories[row["movieId"]] = genres[0] if genres else ""
    _, ratings = _open_rows(folder / "ratings.csv", ["userId", "movieId", "rating", "timestamp"])
    for row in ratings:
        data.user.append(row["userId"])
        data.item.append(row["movieId"])
        data.time.append(float(row["timestamp"]))
        data.basket.append("")
        data.catalogue.setdefault(row["movieId"], f"movie {row['movieId']}")
        data.categories.setdefault(row["movieId"], "")
    return data


def split_movielens(source: Path, out: Path, test_fraction: float = 0.2, seed: int = 7) -> dict[str, int]:
    """Write OUT/train and OUT/test: each user's last rating (ties: larger movieId) and the tags it would reveal go to test.

    ``test_fraction`` and ``seed`` are unused: the holdout is by time.
    """
    header, ratings = _open_rows(source / "ratings.csv", ["userId", "movieId", "rating", "timestamp"])
    last: dict[str, tuple[int, int]] = {}
    for row in ratings:
        key = (int(row["timestamp"]), int(row["movieId"]))
        if row["userId"] not in last or key > last[row["userId"]]:
            last[row["userId"]] = key
    test = [r for r in ratings if last[r["userId"]] == (int(r["timestamp"]), int(r["movieId"]))]
    train = [r for r in ratings if last[r["userId"]] != (int(r["timestamp"]), int(r["movieId"]))]
    write_csv_table(out / "train" / "ratings.csv", header, train)
    write_csv_table(out / "test" / "ratings.csv", header, test)
    for name in ("movies.csv", "links.csv"):
        if (source / name).exists():
            for side in ("train", "test"):
                shutil.copyfile(source / name, out / side / name)
    if (source / "tags.csv").exists():
        tag_header, tags = _open_rows(source / "tags.csv", ["userId", "movieId", "tag", "timestamp"])

        def reveals(row: dict[str, str]) -> bool:
            held = last.get(row["userId"])
            return held is not None and (int(row["movieId"]) == held[1] or int(row["timestamp"]) >= held[0])

        write_csv_table(out / "train" / "tags.csv", tag_header, [t for t in tags if not reveals(t)])
        write_csv_table(out / "test" / "tags.csv", tag_header, [t for t in tags if reveals(t)])
    return {"train": len(train), "test": len(test), "users": len(last)}


# --- Online Retail --------------------------------------------------------------------------


def _retail_time(value: str) -> float:
    return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()


def _is_purchase(row: dict[str, str]) -> bool:
    try:
        quantity, price = int(row["Quantity"]), float(row["UnitPrice"])
    except ValueError:
        return False
    return bool(
        PRODUCT_CODE.match(row["StockCode"].strip()) and price > 0 and row["InvoiceNo"].isdigit() and quantity > 0
    )


RETAIL_COLUMNS = ["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]


def read_online_retail(folder: Path, catalogue_dir: Path | None = None) -> Interactions:
    """Read the purchase lines of an Online Retail folder (and the catalogue from ``catalogue_dir`` or ``folder``)."""
    data = Interactions()
    catalogue_dir = catalogue_dir or folder
    if (catalogue_dir / "items.csv").exists():
        _, items = _open_rows(catalogue_dir / "items.csv", ["StockCode", "Description"])
        for row in items:
            code = row["StockCode"].strip()
            if PRODUCT_CODE.match(code):
                data.catalogue.setdefault(code, row["Description"].strip() or code)
                data.categories.setdefault(code, "")
    _, rows = _open_rows(folder / "transactions.csv", RETAIL_COLUMNS)
    anonymous: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if not _is_purchase(row):
            continue
        code = row["StockCode"].strip()
        data.catalogue.setdefault(code, (row.get("Description") or "").strip() or code)
        data.categories.setdefault(code, "")
        customer = row["CustomerID"].strip()
        if not customer:
            anonymous[row["InvoiceNo"]].append(code)
            continue
        data.user.append(str(int(float(customer))))
        data.item.append(code)
        data.time.append(_retail_time(row["InvoiceDate"]))
        data.basket.append(row["InvoiceNo"])
    data.extra_baskets = [sorted(set(codes)) for codes in anonymous.values() if len(set(codes)) > 1]
    return data


def split_online_retail(source: Path, out: Path, test_fraction: float = 0.2, seed: int = 7) -> dict[str, int]:
    """Write OUT/train and OUT/test: per customer with 2+ purchase invoices, the last one and everything at or after it go to test.

    ``test_fraction`` and ``seed`` are unused: the holdout is by time.
    """
    header, rows = _open_rows(source / "transactions.csv", RETAIL_COLUMNS)
    invoices: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        customer = row["CustomerID"].strip()
        if customer and not row["InvoiceNo"].startswith("C"):
            invoices[customer][row["InvoiceNo"]] = _retail_time(row["InvoiceDate"])
    cutoff: dict[str, float] = {}
    for customer, times in invoices.items():
        if len(times) >= 2:
            cutoff[customer] = max((t, no) for no, t in times.items())[0]
    train, test = [], []
    for row in rows:
        customer = row["CustomerID"].strip()
        held = customer in cutoff and _retail_time(row["InvoiceDate"]) >= cutoff[customer]
        (test if held else train).append(row)
    write_csv_table(out / "train" / "transactions.csv", header, train)
    write_csv_table(out / "test" / "transactions.csv", header, test)
    if (source / "items.csv").exists():
        for side in ("train", "test"):
            shutil.copyfile(source / "items.csv", out / side / "items.csv")
    return {"train": len(train), "test": len(test), "customers_held_out": len(cutoff)}


READERS = {"movielens": read_movielens, "online_retail": read_online_retail}


def held_out_targets(dataset: str, test: Interactions) -> dict[str, set[str]]:
    """Return user -> held-out items: the one rating (MovieLens) or the last basket's items (Online Retail)."""
    targets: dict[str, set[str]] = defaultdict(set)
    by_user = test.histories()
    for user, rows in by_user.items():
        if dataset == "online_retail":
            first_time = rows[0][0]
            first_baskets = {b for t, _, b in rows if t == first_time}
            targets[user] = {i for t, i, b in rows if b in first_baskets}
        else:
            targets[user] = {i for _, i, _ in rows}
    return dict(targets)
