"""Home Depot importer on the real files: the full catalogue, idempotence, broken references."""

from __future__ import annotations

import pytest
from django.core.management import CommandError

from catalog.models import Product
from search.models import JudgedQuery, RelevanceLabel
from tests.importing import copy_head, import_dataset

pytestmark = pytest.mark.django_db


def stored_counts() -> tuple[int, int, int]:
    """Rows stored in the tables this importer fills."""
    return Product.objects.count(), JudgedQuery.objects.count(), RelevanceLabel.objects.count()


def test_full_homedepot_import_loads_all_54667_products(data_dir):
    counts = import_dataset("homedepot", data_dir / "homedepot_search")

    assert (counts["products"], counts["queries"], counts["labels"]) == (54_667, 8_257, 51_863)
    assert stored_counts() == (54_667, 8_257, 51_863)
    nails = Product.objects.get(sku="100179")
    assert "30å¡ Galvanized" in nails.title  # the source's mojibake, kept as is
    assert (nails.category_path, nails.brand) == ("", "")
    mower = Product.objects.get(sku="100011")  # "Briggs &amp; Stratton" in products.csv
    assert mower.title.endswith("Gas Lawn Mower with Briggs & Stratton Engine")
    assert not Product.objects.filter(title__regex=r"&(amp|quot|#39);").exists()
    label = RelevanceLabel.objects.select_related("query", "product").get(
        query__external_id="q02262", product__sku="100001"
    )
    assert label.relevance == 3.0
    assert label.query.dataset == "homedepot"


def test_second_homedepot_import_adds_nothing(data_dir):
    folder = data_dir / "homedepot_search"
    first = import_dataset("homedepot", folder, limit=3000)
    before = stored_counts()

    again = import_dataset("homedepot", folder, limit=3000)

    assert before == (3000, 3000, first["labels"])
    assert (again["products"], again["queries"], again["labels"]) == (0, 0, 0)
    assert stored_counts() == before


def test_label_of_an_unknown_product_names_file_and_line(data_dir, tmp_path):
    source = data_dir / "homedepot_search"
    copy_head(source / "products.csv", tmp_path / "products.csv", 3)
    (tmp_path / "queries.csv").write_text("query_id,query\nq02262,angle bracket\nq06560,simpson sku able\n")
    copy_head(source / "labels.csv", tmp_path / "labels.csv", 3, extra="4,q02262,999999,Nothing,2\n")

    with pytest.raises(CommandError, match=r"nothing imported: .*labels\.csv, line 4: unknown product_uid '999999'"):
        import_dataset("homedepot", tmp_path)

    assert stored_counts() == (0, 0, 0)


def test_relevance_outside_one_to_three_names_file_and_line(data_dir, tmp_path):
    source = data_dir / "homedepot_search"
    copy_head(source / "products.csv", tmp_path / "products.csv", 3)
    (tmp_path / "queries.csv").write_text("query_id,query\nq02262,angle bracket\n")
    (tmp_path / "labels.csv").write_text("id,query_id,product_uid,product_title,relevance\n2,q02262,100001,Angle,4.5\n")

    with pytest.raises(CommandError, match=r"labels\.csv, line 2: column 'relevance'"):
        import_dataset("homedepot", tmp_path)

    assert stored_counts() == (0, 0, 0)


def test_titles_are_stored_as_text_with_html_entities_unescaped(tmp_path):
    (tmp_path / "products.csv").write_text(
        "product_uid,product_title\n"
        "1,MTD 20 in. Briggs &amp; Stratton Mower\n"
        "2,Corner Baker&#39;s Rack 36&quot; Wide\n"
        "3,Plain title &amp co\n",
        encoding="utf-8",
    )
    (tmp_path / "queries.csv").write_text("query_id,query\nq1,briggs mower\n", encoding="utf-8")
    (tmp_path / "labels.csv").write_text("id,query_id,product_uid,product_title,relevance\n1,q1,1,x,3\n")

    import_dataset("homedepot", tmp_path)

    titles = dict(Product.objects.values_list("sku", "title"))
    assert titles == {
        "1": "MTD 20 in. Briggs & Stratton Mower",
        "2": "Corner Baker's Rack 36\" Wide",
        "3": "Plain title & co",  # html.unescape also reads an entity without its semicolon
    }


def test_a_nul_byte_in_a_product_title_names_file_and_line(tmp_path):
    (tmp_path / "products.csv").write_bytes(b"product_uid,product_title\n1,Angle bracket\n2,Simpson\x00 Strong-Tie\n")
    (tmp_path / "queries.csv").write_text("query_id,query\nq1,angle bracket\n")
    (tmp_path / "labels.csv").write_text("id,query_id,product_uid,product_title,relevance\n1,q1,1,x,3\n")

    with pytest.raises(CommandError, match=r"products\.csv, line 3: contains a NUL byte"):
        import_dataset("homedepot", tmp_path)

    assert stored_counts() == (0, 0, 0)
