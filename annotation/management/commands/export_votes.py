"""python manage.py export_votes SLUG [--output PATH.csv]"""
import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from annotation.selectors import study_votes_rows
from annotation.services import VOTE_EXPORT_COLUMNS
from common.csv_safe import csv_dict_writer


class Command(BaseCommand):
    help = "Write a study's current ratings (not gold/trap items) as CSV in import_votes' format, the raters' comments last."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--output", "-o", help="File to write; standard output when omitted.")

    def handle(self, *args, **o):
        study = Study.objects.filter(slug=o["slug"]).first()
        if study is None:
            raise CommandError(f"no study {o['slug']!r}")
        rows = study_votes_rows(study=study)
        if o["output"]:
            with open(o["output"], "w", encoding="utf-8", newline="") as fh:
                self._write(fh, rows)
            self.stdout.write(json.dumps({"study": study.slug, "ratings": len(rows), "path": o["output"]}))
        else:
            self._write(self.stdout, rows)

    @staticmethod
    def _write(fh, rows) -> None:
        # Formula-leading keys and names get a leading quote; import_votes takes it off again.
        writer = csv_dict_writer(fh, fieldnames=VOTE_EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
