"""python manage.py export_participants SLUG [--output PATH.csv] (issue 21; docs/crowd.md)"""
from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from annotation.participants import PARTICIPANT_COLUMNS, participant_rows
from common.csv_safe import csv_writer


class Command(BaseCommand):
    help = "Write each participant's work (items, time, onboarding, gold and trap pass rates, flags) as CSV."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--output", "-o", help="File to write; standard output when omitted.")

    def handle(self, *args, **o):
        study = Study.objects.filter(slug=o["slug"]).first()
        if study is None:
            raise CommandError(f"no study {o['slug']!r}")
        rows = participant_rows(study=study)
        if o["output"]:
            with open(o["output"], "w", encoding="utf-8", newline="") as fh:
                self._write(fh, rows)
        else:
            self._write(self.stdout, rows)

    @staticmethod
    def _write(fh, rows) -> None:
        writer = csv_writer(fh)  # formula-leading display names get a leading quote
        writer.writerow(PARTICIPANT_COLUMNS)
        for row in rows:
            writer.writerow([" ".join(row[c]) if c == "flags" else row[c] for c in PARTICIPANT_COLUMNS])
