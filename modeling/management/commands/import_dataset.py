"""`python manage.py import_dataset {spc,pfg,ed,convai2,jsonl} PATH [--split S] [--name N] [--limit N]`.

Prints one JSON line: {"dataset", "split", "conversations", "samples", "skipped_lines",
"merged_lines"} (+ "unchanged": true when the same file was imported before). A bad file
exits non-zero with a message naming the file and line, and writes nothing.
"""
import json

from django.core.management.base import BaseCommand, CommandError

from modeling.importers import PARSERS
from modeling.importers.base import SPLITS
from modeling.importers.service import dataset_import


class Command(BaseCommand):
    help = "Import a dialogue dataset file (PFG: its folder) as conversations and samples."

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=list(PARSERS), help="Source format.")
        parser.add_argument("path", help="The file; for pfg the folder with full_dialog.csv and full_info.csv.")
        parser.add_argument(
            "--split", choices=SPLITS, help="Put every conversation in this split (default: from the file, else a seeded 90/10 train/valid split)."
        )
        parser.add_argument("--name", help="Dataset name (default: the kind; for jsonl the file name).")
        parser.add_argument("--limit", type=int, help="Import only the first N conversations.")

    def handle(self, *args, **opts):
        try:
            report = dataset_import(
                kind=opts["kind"], path=opts["path"], split=opts["split"], name=opts["name"], limit=opts["limit"]
            )
        except (ValueError, OSError) as exc:  # ImportFileError, DatasetImportError, unreadable file
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(report.as_dict()))
