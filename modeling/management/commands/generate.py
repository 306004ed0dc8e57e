"""`python manage.py generate`: generate a trained system's responses for a split.

Prints one JSON line; skips samples that already have a response of the system.
"""
import json

from django.core.management.base import BaseCommand, CommandError

from common.lookup import by_name_or_command_error
from modeling.grag_services import system_generate
from modeling.models import System


class Command(BaseCommand):
    help = "Generate responses of a trained GRAG system (greedy, beam or sampling) and store them."

    def add_arguments(self, parser):
        parser.add_argument("--system", required=True)
        parser.add_argument("--split", default="test")
        parser.add_argument("--limit", type=int)
        parser.add_argument("--decoding", choices=["greedy", "beam", "sample"])

    def handle(self, *args, **opts):
        system = by_name_or_command_error(System.objects.all(), opts["system"], hint="Train one with `manage.py train` first.")
        try:
            result = system_generate(system=system, split=opts["split"], limit=opts["limit"], decoding=opts["decoding"])
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(result))
