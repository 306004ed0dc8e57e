"""Section 3.1's rule (one sample per non-leading agent turn) gives the same samples with and without the database."""
from pathlib import Path

import pytest

from modeling.grag.data import samples_from_file
from modeling.importers.service import dataset_import
from modeling.models import Sample

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo" / "demo.jsonl"


@pytest.mark.django_db
def test_file_samples_equal_the_imported_samples():
    dataset_import(kind="jsonl", path=str(DEMO), name="demo")
    imported = {(s.key.split("/", 2)[2], s.reference, tuple(t["text"] for t in s.history))
                for s in Sample.objects.filter(dataset__name="demo")}
    from_file = {(d.key.split("/", 1)[1], d.reference, tuple(t["text"] for t in d.history))
                 for d in samples_from_file("jsonl", DEMO)}
    assert len(imported) == 70
    assert from_file == imported
