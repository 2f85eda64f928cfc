"""Catalogue importers on the real MovieLens and Online Retail files: counts, idempotence, all-or-nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError

from catalog.models import Customer, Event, Product
from tests.importing import copy_head, import_dataset

pytestmark = pytest.mark.django_db

RETAIL_HEADER = "row_id,InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def stored_counts() -> tuple[int, int, int]:
    """Rows stored in the tables this importer fills."""
    return Product.objects.count(), Customer.objects.count(), Event.objects.count()


# MovieLens


def test_movielens_import_creates_movies_customers_and_rating_events(data_dir):
    counts = import_dataset("movielens", data_dir / "movielens_latest_small", limit=2000)

    assert counts["products"] == Product.objects.count() == 2000
    assert counts["customers"] == Customer.objects.count() > 0
    assert counts["events"] == Event.objects.count() > 0
    toy_story = Product.objects.get(sku="ml-1")
    assert toy_story.title == "Toy Story (1995)"
    assert toy_story.category_path == "movies/Adventure"
    assert toy_story.attributes["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert toy_story.attributes["year"] == 1995
    rating = Event.objects.get(client_event_id="ml:1:1")
    assert (rating.type, rating.value, rating.customer.external_id) == ("rating", 4.0, "ml-1")
    assert rating.timestamp == datetime(2000, 7, 30, 18, 45, 3, tzinfo=UTC)
    assert not Event.objects.exclude(type="rating").exists()


def test_movielens_tags_are_added_to_product_attributes_once(data_dir, tmp_path):
    source = data_dir / "movielens_latest_small"
    copy_head(source / "movies.csv", tmp_path / "movies.csv", 3)
    copy_head(source / "ratings.csv", tmp_path / "ratings.csv", 2)
    (tmp_path / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n1,1,pixar,1\n2,1,Pixar,2\n2,1,fun,3\n", encoding="utf-8"
    )

    import_dataset("movielens", tmp_path)

    assert Product.objects.get(sku="ml-1").attributes["tags"] == ["pixar", "fun"]


def test_second_movielens_import_adds_nothing(data_dir):
    folder = data_dir / "movielens_latest_small"
    import_dataset("movielens", folder, limit=1000)
    before = stored_counts()

    again = import_dataset("movielens", folder, limit=1000)

    assert (again["products"], again["customers"], again["events"]) == (0, 0, 0)
    assert stored_counts() == before


def test_non_numeric_rating_aborts_the_import_naming_file_and_line(data_dir, tmp_path):
    source = data_dir / "movielens_latest_small"
    copy_head(source / "movies.csv", tmp_path / "movies.csv", 50)
    copy_head(source / "ratings.csv", tmp_path / "ratings.csv", 3, extra="1,6,four,964982224\n")

    with pytest.raises(CommandError, match=r"nothing imported: .*ratings\.csv, line 4: column 'rating'"):
        import_dataset("movielens", tmp_path)

    assert stored_counts() == (0, 0, 0)


def test_rating_of_a_movie_missing_from_movies_csv_is_an_error(data_dir, tmp_path):
    source = data_dir / "movielens_latest_small"
    copy_head(source / "movies.csv", tmp_path / "movies.csv", 3)
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,999999,4.0,964982224\n")

    with pytest.raises(CommandError, match=r"ratings\.csv, line 2: unknown movieId 999999"):
        import_dataset("movielens", tmp_path)

    assert stored_counts() == (0, 0, 0)


# Online Retail


def test_online_retail_import_turns_invoice_lines_into_events(data_dir):
    counts = import_dataset("online_retail", data_dir / "online_retail", limit=20_000)

    assert counts["products"] == Product.objects.count() > 4000
    assert counts["events"] == Event.objects.count() == 20_000 - counts["skipped_rows"]
    assert counts["skipped_non_product"] > 0
    line = Event.objects.get(client_event_id="or:0")
    assert (line.type, line.value, line.session) == ("purchase", 6.0, "536365")
    assert line.product.sku == "or-85123A"
    assert line.customer.external_id == "or-17850"
    assert line.timestamp == datetime(2010, 12, 1, 8, 26, tzinfo=UTC)
    assert Event.objects.filter(type="return").exists()
    assert not Event.objects.filter(session__startswith="C").exclude(type="return").exists()
    assert not Event.objects.filter(product__sku__in=["or-POST", "or-M", "or-D", "or-DOT"]).exists()


def test_cancellations_become_returns_and_non_product_lines_are_skipped(tmp_path):
    (tmp_path / "items.csv").write_text("StockCode,Description\n85123A,WHITE HANGING HEART \nPOST,POSTAGE\n")
    (tmp_path / "transactions.csv").write_text(
        "\n".join(
            [
                RETAIL_HEADER,
                "0,536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom",
                "1,536365,POST,POSTAGE,1,2010-12-01 08:26:00,18.0,17850,United Kingdom",
                "2,C536366,85123A,WHITE HANGING HEART,-2,2010-12-02 09:00:00,2.55,17850,United Kingdom",
                "3,536367,85123A,WHITE HANGING HEART,-5,2010-12-03 09:00:00,0.0,,United Kingdom",
                "4,536368,22633,HAND WARMER UNION JACK,3,2010-12-04 10:00:00,1.85,,United Kingdom",
                "5,536369,85123A,WHITE HANGING HEART,1,2010-12-05 10:00:00,2.95,17850,United Kingdom",
                "6,536370,gift_0001_10,Dotcomgiftshop Gift Voucher £10.00,1,2010-12-05 10:00:00,8.5,,United Kingdom",
            ]
        )
        + "\n"
    )

    counts = import_dataset("online_retail", tmp_path)

    assert counts["skipped_rows"] == 3
    assert (counts["skipped_non_product"], counts["skipped_no_price"]) == (2, 1)
    assert counts["skipped_items"] == 1
    returned = Event.objects.get(client_event_id="or:2")
    assert (returned.type, returned.value, returned.session) == ("return", 2.0, "C536366")
    anonymous = Event.objects.get(client_event_id="or:4")
    assert anonymous.customer is None
    assert anonymous.product.title == "HAND WARMER UNION JACK"  # not in items.csv: made from the line
    heart = Product.objects.get(sku="or-85123A")
    assert (heart.title, heart.price) == ("WHITE HANGING HEART", Decimal("2.95"))  # latest price
    assert not Product.objects.filter(sku__in=["or-POST", "or-gift_0001_10"]).exists()
    assert Event.objects.count() == 4


def test_second_online_retail_import_adds_nothing(data_dir):
    folder = data_dir / "online_retail"
    import_dataset("online_retail", folder, limit=5000)
    before = stored_counts()

    again = import_dataset("online_retail", folder, limit=5000)

    assert (again["products"], again["customers"], again["events"]) == (0, 0, 0)
    assert stored_counts() == before


def test_non_numeric_quantity_aborts_the_import_naming_file_and_line(data_dir, tmp_path):
    source = data_dir / "online_retail"
    copy_head(source / "items.csv", tmp_path / "items.csv", 100)
    copy_head(
        source / "transactions.csv",
        tmp_path / "transactions.csv",
        10,
        extra="9,536365,85123A,WHITE HANGING HEART,six,2010-12-01 08:26:00,2.55,17850,United Kingdom\n",
    )

    with pytest.raises(CommandError, match=r"transactions\.csv, line 11: column 'Quantity'"):
        import_dataset("online_retail", tmp_path)

    assert stored_counts() == (0, 0, 0)


def test_missing_column_aborts_the_import_naming_the_file(tmp_path):
    (tmp_path / "items.csv").write_text("StockCode\n85123A\n")
    (tmp_path / "transactions.csv").write_text(RETAIL_HEADER + "\n")

    with pytest.raises(CommandError, match=r"items\.csv, line 1: missing columns \['Description'\]"):
        import_dataset("online_retail", tmp_path)


def test_imported_products_are_queued_for_embedding(data_dir, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        import_dataset("movielens", data_dir / "movielens_latest_small", limit=50)
    assert len(callbacks) == 1  # backbone.embed_version for the serving version, after commit
    with django_capture_on_commit_callbacks() as callbacks:
        import_dataset("movielens", data_dir / "movielens_latest_small", limit=50)
    assert callbacks == []  # nothing new, nothing to embed


def test_a_file_that_is_not_utf8_is_refused_naming_the_line(tmp_path):
    folder = tmp_path / "banking77"
    folder.mkdir()
    (folder / "train.csv").write_bytes(b"text,category\nhello,greeting\ncaf\xe9 card,card_arrival\n")
    with pytest.raises(CommandError, match=r"train.csv, line 3: not UTF-8"):
        import_dataset("banking77", folder)


def test_a_row_the_csv_parser_rejects_is_reported_at_its_own_line(tmp_path):
    field_too_long = '"' + "x" * 200_000 + '"'  # past the csv module's field size limit
    (tmp_path / "items.csv").write_text(f"StockCode,Description\n85123A,MUG\n10001,{field_too_long}\n")
    (tmp_path / "transactions.csv").write_text(RETAIL_HEADER + "\n")

    with pytest.raises(CommandError, match=r"items\.csv, line 3: unreadable row \(field larger than field limit"):
        import_dataset("online_retail", tmp_path)


def test_a_parser_error_inside_a_quoted_multiline_field_names_the_physical_line(tmp_path):
    long_tail = "x" * 200_000
    (tmp_path / "items.csv").write_text(f'StockCode,Description\n10001,"two\nlines {long_tail}"\n')
    (tmp_path / "transactions.csv").write_text(RETAIL_HEADER + "\n")

    with pytest.raises(CommandError, match=r"items\.csv, line 3: unreadable row"):
        import_dataset("online_retail", tmp_path)


def test_a_nul_byte_in_a_title_aborts_the_import_naming_file_and_line(tmp_path):
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Comedy\n2,Jumanji\x00 (1995),Adventure\n", encoding="utf-8"
    )
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n")

    with pytest.raises(CommandError, match=r"nothing imported: .*movies\.csv, line 3: contains a NUL byte"):
        import_dataset("movielens", tmp_path)

    assert stored_counts() == (0, 0, 0)
