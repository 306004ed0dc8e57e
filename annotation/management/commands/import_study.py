"""python manage.py import_study PATH.jsonl --slug S --baseline NAME --challenger NAME [--overlap 3] [--seed 0]"""
import json

from django.core.management.base import BaseCommand, CommandError

from annotation.services import StudyFileError, study_import_jsonl


class Command(BaseCommand):
    help = "Create a blinded A/B study from a JSONL file (one item a line); prints {\"study\", \"items\"}."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--slug", required=True)
        parser.add_argument("--baseline", required=True, help="System name of the baseline in each line's responses.")
        parser.add_argument("--challenger", required=True)
        parser.add_argument("--overlap", type=int, default=3, help="Annotators per item (default 3).")
        parser.add_argument("--seed", type=int, default=0, help="Seeds the A/B sides and the trap items.")
        parser.add_argument("--trap-rate", type=float, default=0.0, help="Share of quality-control items (0 to 1).")

    def handle(self, *args, **o):
        if not 0 <= o["trap_rate"] < 1:
            raise CommandError("--trap-rate must be between 0 and 1")
        try:
            study, n = study_import_jsonl(
                path=o["path"], slug=o["slug"], baseline=o["baseline"], challenger=o["challenger"],
                overlap=o["overlap"], seed=o["seed"], trap_rate=o["trap_rate"],
            )
        except StudyFileError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps({"study": study.slug, "items": n}))
