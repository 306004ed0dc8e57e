"""python manage.py check_study SLUG [--fail-on-flags]"""
import json

from django.core.management.base import BaseCommand, CommandError

from annotation.giveaways import study_giveaway_report
from annotation.models import Study


class Command(BaseCommand):
    help = (
        "Flag responses whose text gives their author away (a model naming itself, 'as an AI language model', "
        "system or run names, prompt tags) and list degenerate responses per system (empty, whitespace-only, "
        "punctuation-only, repetition loop, cut mid-sentence, one unbroken long word) before a study opens; "
        "prints one JSON line."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument(
            "--fail-on-flags", action="store_true", help="Exit non-zero when anything is flagged (for scripts and CI)."
        )

    def handle(self, *args, **o):
        study = Study.objects.select_related("baseline_system", "challenger_system").filter(slug=o["slug"]).first()
        if study is None:
            raise CommandError(f"no study {o['slug']!r}")
        report = study_giveaway_report(study=study)
        self.stdout.write(json.dumps(report))
        degenerate = report["degenerate"]["flags"]
        if o["fail_on_flags"] and (report["flags"] or degenerate):
            raise CommandError(
                f"{len(report['flags'])} giveaway(s) in {report['flagged_items']} item(s) and {len(degenerate)} "
                f"degenerate response(s) in study {study.slug!r}"
            )
