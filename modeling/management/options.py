"""Argument checks shared by the modeling commands, each failing as a CommandError that says what to do."""
from django.core.management.base import CommandError

from common.lookup import by_name_or_command_error
from modeling.models import Dataset


def dataset_by_name(name: str) -> Dataset:
    """The dataset called ``name``, or a CommandError listing the known ones."""
    return by_name_or_command_error(Dataset.objects.all(), name, hint="Import one with import_dataset first.")


def batch_size_checked(value: int) -> int:
    if value < 1:
        raise CommandError(f"--batch-size must be at least 1, got {value}")
    return value
