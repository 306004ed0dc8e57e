"""python manage.py add_annotator USERNAME --password PW --study SLUG"""
import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from annotation.services import annotator_add


class Command(BaseCommand):
    help = "Create an annotator (or take an existing non-staff account) and give them a study; prints {\"annotator\", \"study\"}."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--password",
            help="Password of a NEW account (AUTH_PASSWORD_VALIDATORS apply). An existing account's password is "
            "changed by its owner or with `manage.py changepassword`, never here.",
        )
        parser.add_argument("--study", help="Slug of a study to give them.")

    def handle(self, *args, **o):
        study = None
        if o["study"]:
            study = Study.objects.filter(slug=o["study"]).first()
            if study is None:
                raise CommandError(f"no study {o['study']!r}; create it first with import_study")
        try:
            user = annotator_add(username=o["username"], password=o["password"], study=study)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps({"annotator": user.username, "study": study.slug if study else None}))
