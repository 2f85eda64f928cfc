"""Live lexical indexes on catalog_product, owned by search (the catalogue's model is not changed).

Expression indexes, so a created or updated product is searchable at once with no sync code:
- full text: title (weight A) > brand and category (B) > description (C), English stemming;
- trigram (pg_trgm) on the lower-cased title, for typo-tolerant matching and suggestions.
The expressions must stay identical to ``search.services.PRODUCT_TSVECTOR`` / ``PRODUCT_TRIGRAM_TEXT``
for PostgreSQL to use the indexes (a test checks the plans).
"""

from django.db import migrations

TSVECTOR = (
    "(setweight(to_tsvector('english'::regconfig, title), 'A') || "
    "setweight(to_tsvector('english'::regconfig, brand || ' ' || replace(category_path, '/', ' ')), 'B') || "
    "setweight(to_tsvector('english'::regconfig, description), 'C'))"
)


class Migration(migrations.Migration):
    dependencies = [
        ("search", "0002_search_log"),
        ("catalog", "0001_initial"),
        ("backbone", "0001_initial"),  # creates the pg_trgm extension
    ]

    operations = [
        migrations.RunSQL(
            f"CREATE INDEX IF NOT EXISTS search_product_fts ON catalog_product USING gin ({TSVECTOR})",
            "DROP INDEX IF EXISTS search_product_fts",
        ),
        migrations.RunSQL(
            "CREATE INDEX IF NOT EXISTS search_product_title_trgm ON catalog_product "
            "USING gin (lower(title) gin_trgm_ops)",
            "DROP INDEX IF EXISTS search_product_title_trgm",
        ),
    ]
