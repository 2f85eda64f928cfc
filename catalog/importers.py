"""Dataset importers behind ``manage.py import_dataset NAME --data-dir DIR``.

Each importer reads one folder laid out like ``../shared/data/NAME/``, validates every row
before writing (a malformed row raises :class:`DatasetError` naming file and line), and
writes in one transaction (the command's), so a failed import leaves nothing behind. Rows
carry natural keys, so a second run adds nothing.

Apps register their own importers here in ``AppConfig.ready``; the catalogue's own (MovieLens,
Online Retail) live at the bottom of this module, after the helpers every importer shares.
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

from catalog.models import Customer, Event, Product

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
    with open(path, "rb") as fh:
        reader = csv.DictReader(decoded_lines(path, fh))
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(path, 1, f"missing columns {missing}; found {reader.fieldnames}")
        rows = tqdm(reader, desc=path.name, unit=" rows", disable=not options.progress, mininterval=1.0)
        try:
            for count, row in enumerate(rows, start=1):
                if options.limit is not None and count > options.limit:
                    break
                if None in row or any(row[c] is None for c in required):
                    raise DatasetError(path, reader.line_num, f"expected {len(reader.fieldnames)} fields")
                yield reader.line_num, row
        except csv.Error as exc:
            # DictReader.line_num still holds the previous row's last line; the csv reader's is the failing one.
            raise DatasetError(path, reader.reader.line_num, f"unreadable row ({exc})") from None


def decoded_lines(path: Path, lines: Iterator[bytes]) -> Iterator[str]:
    """Decode a file's lines as UTF-8 one by one, so an error names the exact line.

    A NUL byte is refused here: the csv module reads it, but PostgreSQL text cannot hold it.
    """
    for number, raw in enumerate(lines, start=1):
        nul = raw.find(b"\0")
        if nul >= 0:
            raise DatasetError(path, number, f"contains a NUL byte (at byte {nul} of the line)")
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(path, number, f"not UTF-8 ({exc.reason} at byte {exc.start} of the line)") from None


def read_csv_table(path: Path, required: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Return (header, rows) of a whole UTF-8 CSV file, checked as :func:`read_csv` checks it.

    For code that rewrites a file whole in its own column order (the dataset splitters).
    """
    rows = [row for _, row in read_csv(path, required, ImportOptions(progress=False))]
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    return header, rows


def write_csv_table(path: Path, header: list[str], rows: Iterable[dict[str, str]]) -> None:
    """Write ``rows`` as a UTF-8 CSV with columns ``header``, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def parse_field(path: Path, line: int, row: dict[str, str], column: str, kind: Callable[[str], Any]) -> Any:
    """Convert ``row[column]`` with ``kind`` or raise a DatasetError naming file, line and column."""
    try:
        return kind(row[column])
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise DatasetError(path, line, f"column {column!r}: cannot read {row[column]!r} ({exc})") from None


def progress_bar(iterable, options: ImportOptions, **kwargs):
    """Wrap ``iterable`` in a tqdm bar unless progress is off."""
    return tqdm(iterable, disable=not options.progress, mininterval=1.0, **kwargs)


def text_field(path: Path, line: int, row: dict[str, str], column: str, *, max_length: int, strip: bool = True) -> str:
    """Return ``row[column]`` (stripped unless ``strip`` is false); raise a DatasetError if empty or too long."""
    value = row[column].strip() if strip else row[column]
    if not value.strip():
        raise DatasetError(path, line, f"column {column!r} is empty")
    if len(value) > max_length:
        raise DatasetError(path, line, f"column {column!r} is longer than {max_length} characters")
    return value


def in_range(kind: Callable[[str], Any], low: Any, high: Any) -> Callable[[str], Any]:
    """A ``parse_field`` kind that also checks ``low <= value <= high`` (NaN fails)."""

    def parse(value: str) -> Any:
        number = kind(value)
        if not low <= number <= high:
            raise ValueError(f"outside {low}..{high}")
        return number

    return parse


def unix_time(value: str) -> datetime:
    """Read Unix seconds as an aware UTC datetime (a ``parse_field`` kind)."""
    return datetime.fromtimestamp(int(value), tz=UTC)


def utc_time(value: str) -> datetime:
    """Read ``YYYY-MM-DD HH:MM:SS`` without a zone, meaning UTC, as an aware datetime (a ``parse_field`` kind)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        raise ValueError("expected a time without zone")
    return parsed.replace(tzinfo=UTC)


def known(path: Path, line: int, key: Any, keys: Collection[Any], what: str, options: ImportOptions) -> bool:
    """Whether a referenced ``key`` was read; unknown is an error unless ``--limit`` cut the files (caller skips)."""
    if key in keys:
        return True
    if options.limit is not None:
        return False
    raise DatasetError(path, line, f"unknown {what} {key!r}")


def insert_new(
    model: type[models.Model],
    objs: Iterable[models.Model],
    key: tuple[str, ...],
    options: ImportOptions,
    *,
    stored: models.QuerySet | None = None,
    batch_size: int = 2000,
) -> int:
    """Bulk-insert the objects whose natural ``key`` (attribute names) is not stored yet; return how many.

    ``stored`` narrows the rows compared with (default: all of ``model``). Of objects sharing a key
    the first wins. Call inside a transaction (the import command's).
    """
    stored_keys = set((model.objects.all() if stored is None else stored).values_list(*key))
    new: dict[tuple, models.Model] = {}
    for obj in objs:
        natural = tuple(getattr(obj, field) for field in key)
        if natural not in stored_keys:
            new.setdefault(natural, obj)
    rows = list(new.values())
    starts = progress_bar(range(0, len(rows), batch_size), options, desc=f"insert {model._meta.label}", unit=" batches")
    for start in starts:
        # ignore_conflicts: a row committed by someone else meanwhile is not an error.
        model.objects.bulk_create(rows[start : start + batch_size], ignore_conflicts=True)
    return len(rows)


def id_map(queryset: models.QuerySet, field: str, values: Iterable[Any], chunk: int = 10_000) -> dict[Any, int]:
    """Map each stored ``field`` value among ``values`` to its row id."""
    values = list(values)
    ids: dict[Any, int] = {}
    for start in range(0, len(values), chunk):
        ids.update(queryset.filter(**{f"{field}__in": values[start : start + chunk]}).values_list(field, "id"))
    return ids


def ensure_customers(external_ids: Collection[str], options: ImportOptions) -> tuple[int, dict[str, int]]:
    """Create the customers not stored yet; return (how many were created, external id -> id)."""
    created = insert_new(Customer, (Customer(external_id=e) for e in external_ids), ("external_id",), options)
    return created, id_map(Customer.objects.all(), "external_id", external_ids)


# MovieLens ml-latest-small ------------------------------------------------------------------

YEAR = re.compile(r"\((\d{4})\)\s*$")
NO_GENRES = "(no genres listed)"


def import_movielens(data_dir: Path, options: ImportOptions) -> dict[str, int]:
    """Import MovieLens: movies as products ``ml-<movieId>``, ratings as ``rating`` events of customers ``ml-<userId>``.

    A product's category is ``movies/<first genre>``; its attributes hold ``genres``, ``year`` (from
    the title, or null) and ``tags`` (from the optional tags.csv, first spelling kept). Ratings are
    worth 0.5-5 stars; their event id is ``ml:<userId>:<movieId>``.
    """
    movies = read_movies(data_dir / "movies.csv", options)
    if (data_dir / "tags.csv").exists():
        add_movie_tags(data_dir / "tags.csv", movies, options)
    ratings = read_ratings(data_dir / "ratings.csv", movies, options)
    products = insert_new(Product, movies.values(), ("sku",), options)
    product_ids = id_map(Product.objects.all(), "sku", [m.sku for m in movies.values()])
    customers, customer_ids = ensure_customers({f"ml-{user}" for user, _, _, _ in ratings}, options)
    events = (
        Event(
            customer_id=customer_ids[f"ml-{user}"],
            product_id=product_ids[movies[movie].sku],
            type=Event.Type.RATING,
            value=rating,
            timestamp=when,
            client_event_id=f"ml:{user}:{movie}",
        )
        for user, movie, rating, when in ratings
    )
    stored = Event.objects.filter(client_event_id__startswith="ml:")
    created = insert_new(Event, events, ("client_event_id",), options, stored=stored)
    return {"products": products, "customers": customers, "events": created}


def read_movies(path: Path, options: ImportOptions) -> dict[int, Product]:
    """Read movies.csv into unsaved products keyed by movieId."""
    movies: dict[int, Product] = {}
    for line, row in read_csv(path, ["movieId", "title", "genres"], options):
        movie = parse_field(path, line, row, "movieId", int)
        title = text_field(path, line, row, "title", max_length=500)
        genres = [g for g in row["genres"].split("|") if g and g != NO_GENRES]
        year = YEAR.search(title)
        movies.setdefault(
            movie,
            Product(
                sku=f"ml-{movie}",
                title=title,
                category_path="movies/" + genres[0] if genres else "movies",
                attributes={"genres": genres, "year": int(year.group(1)) if year else None},
            ),
        )
    return movies


def add_movie_tags(path: Path, movies: dict[int, Product], options: ImportOptions) -> None:
    """Add each movie's distinct tags (case-insensitive, first spelling kept) to its attributes."""
    for line, row in read_csv(path, ["userId", "movieId", "tag"], options):
        movie = parse_field(path, line, row, "movieId", int)
        tag = text_field(path, line, row, "tag", max_length=500)
        if not known(path, line, movie, movies, "movieId", options):
            continue
        tags = movies[movie].attributes.setdefault("tags", [])
        if tag.casefold() not in (t.casefold() for t in tags):
            tags.append(tag)


def read_ratings(
    path: Path, movies: dict[int, Product], options: ImportOptions
) -> list[tuple[int, int, float, datetime]]:
    """Read ratings.csv as (userId, movieId, stars, time) tuples."""
    ratings = []
    stars = in_range(float, 0.5, 5.0)
    for line, row in read_csv(path, ["userId", "movieId", "rating", "timestamp"], options):
        user = parse_field(path, line, row, "userId", int)
        movie = parse_field(path, line, row, "movieId", int)
        rating = parse_field(path, line, row, "rating", stars)
        when = parse_field(path, line, row, "timestamp", unix_time)
        if known(path, line, movie, movies, "movieId", options):
            ratings.append((user, movie, rating, when))
    return ratings


# UCI Online Retail ----------------------------------------------------------------------------

# Product codes start with a digit ("85123A") or are the dotcom gift shop's own items ("DCGS0003",
# "DCGSSGIRL"); every other code is a charge or an adjustment: POST, DOT, C2, M, m, D, S, B, CRUK,
# PADS, AMAZONFEE, BANK CHARGES, gift_0001_10 (vouchers).
PRODUCT_CODE = re.compile(r"^(\d|DCGS)")
CENTS = Decimal("0.01")


@dataclass
class RetailLine:
    """One kept invoice line of transactions.csv."""

    row_id: int
    code: str
    description: str
    type: str
    quantity: int
    price: Decimal
    when: datetime
    invoice: str
    customer: str | None


def import_online_retail(data_dir: Path, options: ImportOptions) -> dict[str, int]:
    """Import UCI Online Retail: stock codes as products ``or-<StockCode>``, invoice lines as events.

    Lines of normal invoices become ``purchase`` events and lines of cancellation invoices (``C...``,
    negative quantity) ``return`` events, both worth the absolute quantity, in session ``InvoiceNo``,
    by customer ``or-<CustomerID>`` (anonymous when empty), event id ``or:<row_id>``. Skipped: codes
    that are not products (see ``PRODUCT_CODE``), prices <= 0, and other adjustments. A product's
    title is its items.csv description, else the first one in the transactions, else its code; its
    price is the most recent positive unit price.
    """
    items, skipped_items = read_retail_items(data_dir / "items.csv", options)
    lines, skipped = read_retail_lines(data_dir / "transactions.csv", options)
    products = retail_products(items, lines)
    created_products = insert_new(Product, products.values(), ("sku",), options)
    product_ids = id_map(Product.objects.all(), "sku", [p.sku for p in products.values()])
    customers, customer_ids = ensure_customers({line.customer for line in lines if line.customer}, options)
    events = (
        Event(
            customer_id=customer_ids[line.customer] if line.customer else None,
            product_id=product_ids[f"or-{line.code}"],
            type=line.type,
            value=float(line.quantity),
            timestamp=line.when,
            session=line.invoice,
            client_event_id=f"or:{line.row_id}",
        )
        for line in lines
    )
    stored = Event.objects.filter(client_event_id__startswith="or:")
    created_events = insert_new(Event, events, ("client_event_id",), options, stored=stored, batch_size=5000)
    return {
        "products": created_products,
        "customers": customers,
        "events": created_events,
        "skipped_items": skipped_items,
        "skipped_rows": sum(skipped.values()),
        **{f"skipped_{reason}": count for reason, count in skipped.items()},
    }


def read_retail_items(path: Path, options: ImportOptions) -> tuple[dict[str, str], int]:
    """Read items.csv as {product code: description or ""}, and how many non-product codes it skipped."""
    items: dict[str, str] = {}
    skipped = 0
    for line, row in read_csv(path, ["StockCode", "Description"], options):
        code = text_field(path, line, row, "StockCode", max_length=60)
        if not PRODUCT_CODE.match(code):
            skipped += 1
            continue
        items.setdefault(code, retail_title(row["Description"]))
    return items, skipped


def read_retail_lines(path: Path, options: ImportOptions) -> tuple[list[RetailLine], dict[str, int]]:
    """Validate every line of transactions.csv; return the kept lines and skip counts by reason."""
    columns = ["row_id", "InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]
    lines: list[RetailLine] = []
    skipped = {"non_product": 0, "no_price": 0, "adjustment": 0}
    for line, row in read_csv(path, columns, options):
        row_id = parse_field(path, line, row, "row_id", int)
        invoice = text_field(path, line, row, "InvoiceNo", max_length=128)
        code = text_field(path, line, row, "StockCode", max_length=60)
        quantity = parse_field(path, line, row, "Quantity", int)
        when = parse_field(path, line, row, "InvoiceDate", utc_time)
        price = parse_field(path, line, row, "UnitPrice", finite_decimal)
        customer = parse_field(path, line, row, "CustomerID", lambda v: f"or-{int(v)}" if v.strip() else None)
        if invoice.startswith("C") and quantity < 0:
            kind = Event.Type.RETURN
        elif invoice.isdigit() and quantity > 0:
            kind = Event.Type.PURCHASE
        else:
            kind = None
        if not PRODUCT_CODE.match(code):
            skipped["non_product"] += 1
        elif price <= 0:
            skipped["no_price"] += 1
        elif kind is None:
            skipped["adjustment"] += 1
        else:
            title = retail_title(row["Description"])
            lines.append(RetailLine(row_id, code, title, kind, abs(quantity), price, when, invoice, customer))
    return lines, skipped


def retail_title(description: str) -> str:
    """The description as a title, or "" for a stock-keeping note.

    Real descriptions have capitals ("WHITE METAL LANTERN"); notes have none ("damaged",
    "thrown away", "ebay", and "nan", pandas' missing value as the source wrote it).
    """
    description = description.strip()[:500]
    return description if any(c.isupper() for c in description) else ""


def finite_decimal(value: str) -> Decimal:
    """Read a finite decimal number (a ``parse_field`` kind)."""
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError("not a finite number")
    return number


def retail_products(items: dict[str, str], lines: list[RetailLine]) -> dict[str, Product]:
    """Build unsaved products for the items and for codes seen only in the kept lines."""
    titles = dict(items)
    latest: dict[str, RetailLine] = {}
    for line in lines:
        if not titles.get(line.code):
            titles[line.code] = line.description
        if line.code not in latest or line.when >= latest[line.code].when:
            latest[line.code] = line
    return {
        code: Product(
            sku=f"or-{code}",
            title=title or code,
            price=latest[code].price.quantize(CENTS) if code in latest else None,
        )
        for code, title in titles.items()
    }
