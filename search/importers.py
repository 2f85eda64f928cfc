"""Importer for the Home Depot search relevance set: products, judged queries and graded labels."""

from __future__ import annotations

import html
from pathlib import Path

from catalog.importers import ImportOptions, id_map, in_range, insert_new, known, parse_field, read_csv, text_field
from catalog.models import Product
from search.models import JudgedQuery, RelevanceLabel

DATASET = "homedepot"


def import_homedepot(data_dir: Path, options: ImportOptions) -> dict[str, int]:
    """Import products.csv (sku = product_uid, title only), queries.csv and labels.csv (relevance 1-3).

    Titles are stored as text: HTML entities of the source (``Briggs &amp; Stratton``, ``&#39;``,
    ``&quot;``) are unescaped, mojibake is kept as is (see the dataset README). A label
    naming a product or query absent from the files is an error; with ``--limit`` such labels
    are skipped instead, since the files were cut short.
    """
    products = read_products(data_dir / "products.csv", options)
    queries = read_queries(data_dir / "queries.csv", options)
    labels = read_labels(data_dir / "labels.csv", products, queries, options)
    created_products = insert_new(Product, products.values(), ("sku",), options)
    created_queries = insert_new(JudgedQuery, queries.values(), ("external_id",), options)
    product_ids = id_map(Product.objects.all(), "sku", products)
    query_ids = id_map(JudgedQuery.objects.all(), "external_id", queries)
    created_labels = insert_new(
        RelevanceLabel,
        (
            RelevanceLabel(query_id=query_ids[query], product_id=product_ids[product], relevance=relevance)
            for query, product, relevance in labels
        ),
        ("query_id", "product_id"),
        options,
        stored=RelevanceLabel.objects.filter(query__dataset=DATASET),
    )
    return {"products": created_products, "queries": created_queries, "labels": created_labels}


def read_products(path: Path, options: ImportOptions) -> dict[str, Product]:
    """Read products.csv into unsaved products keyed by product_uid (the first title wins, unescaped)."""
    products: dict[str, Product] = {}
    for line, row in read_csv(path, ["product_uid", "product_title"], options):
        uid = text_field(path, line, row, "product_uid", max_length=64)
        title = html.unescape(text_field(path, line, row, "product_title", max_length=500, strip=False))
        products.setdefault(uid, Product(sku=uid, title=title))
    return products


def read_queries(path: Path, options: ImportOptions) -> dict[str, JudgedQuery]:
    """Read queries.csv into unsaved judged queries keyed by query_id."""
    queries: dict[str, JudgedQuery] = {}
    for line, row in read_csv(path, ["query_id", "query"], options):
        query_id = text_field(path, line, row, "query_id", max_length=64)
        text = text_field(path, line, row, "query", max_length=500, strip=False)
        queries.setdefault(query_id, JudgedQuery(external_id=query_id, text=text, dataset=DATASET))
    return queries


def read_labels(
    path: Path, products: dict[str, Product], queries: dict[str, JudgedQuery], options: ImportOptions
) -> list[tuple[str, str, float]]:
    """Read labels.csv as (query_id, product_uid, relevance) triples, checking both references."""
    labels = []
    relevance = in_range(float, 1.0, 3.0)
    for line, row in read_csv(path, ["query_id", "product_uid", "relevance"], options):
        query = text_field(path, line, row, "query_id", max_length=64)
        product = text_field(path, line, row, "product_uid", max_length=64)
        grade = parse_field(path, line, row, "relevance", relevance)
        if known(path, line, query, queries, "query_id", options) and known(
            path, line, product, products, "product_uid", options
        ):
            labels.append((query, product, grade))
    return labels
