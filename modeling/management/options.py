"""Argument checks shared by the modeling commands, each failing as a CommandError that says what to do."""
from django.core.management.base import CommandError

from modeling.models import Dataset


def dataset_by_name(name: str) -> Dataset:
    """The dataset called ``name``, or a CommandError listing the known ones."""
    dataset = Dataset.objects.filter(name=name).first()
    if dataset is None:
        known = ", ".join(Dataset.objects.values_list("name", flat=True)) or "none"
        raise CommandError(
            f"No dataset named {name!r}. Known datasets: {known}. Import one with import_dataset first."
        )
    return dataset


def batch_size_checked(value: int) -> int:
    if value < 1:
        raise CommandError(f"--batch-size must be at least 1, got {value}")
    return value
