"""python manage.py import_votes SLUG PATH.csv"""
import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from annotation.services import VOTE_COLUMNS, VotesFileError, votes_import


class Command(BaseCommand):
    help = f"Load ratings collected elsewhere (CSV columns {', '.join(VOTE_COLUMNS)}, optionally comment) into a study."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("path")

    def handle(self, *args, **o):
        study = Study.objects.filter(slug=o["slug"]).first()
        if study is None:
            raise CommandError(f"no study {o['slug']!r}")
        try:
            counts = votes_import(study=study, path=o["path"])
        except VotesFileError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps({"study": study.slug, **counts}))
