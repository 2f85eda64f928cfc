"""iPinYou importer on the real file: impressions, features, idempotence, broken rows."""

from __future__ import annotations

import pytest
from django.core.management import CommandError

from ads.models import AdImpression
from tests.importing import copy_head, import_dataset

pytestmark = pytest.mark.django_db


def test_ipinyou_import_stores_impressions_with_their_fields(data_dir):
    counts = import_dataset("ipinyou", data_dir / "ipinyou_ctr", limit=2000)

    assert counts["impressions"] == AdImpression.objects.count() == 2000
    first = AdImpression.objects.get(external_id="ipinyou:0")
    assert (first.dataset, first.clicked) == ("ipinyou", False)
    assert len(first.features) == 17
    assert first.features["IP"] == "60.22.69.*"
    assert first.features["slotprice"] == "1-10"
    assert first.features["source_file"] == "train"
    assert AdImpression.objects.filter(clicked=True).exists()


def test_second_ipinyou_import_adds_nothing(data_dir):
    import_dataset("ipinyou", data_dir / "ipinyou_ctr", limit=1000)

    again = import_dataset("ipinyou", data_dir / "ipinyou_ctr", limit=1000)

    assert again["impressions"] == 0
    assert AdImpression.objects.count() == 1000


def test_click_that_is_not_0_or_1_aborts_the_import_naming_file_and_line(data_dir, tmp_path):
    source = data_dir / "ipinyou_ctr" / "impressions.csv"
    broken = "5,train,yes,2,18,android_safari,60.22.69.*,40,53,null,abc,318719490,320,50,FirstView,Na,11908,2997,1-10\n"
    copy_head(source, tmp_path / "impressions.csv", 5, extra=broken)

    with pytest.raises(CommandError, match=r"nothing imported: .*impressions\.csv, line 6: column 'click'"):
        import_dataset("ipinyou", tmp_path)

    assert AdImpression.objects.count() == 0
