"""Write a study's agreement report (issue 5) as json, csv, html, tex, or Figure 2 as svg / png."""
import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from common.lookup import by_name_or_command_error
from reports import FORMATS, min_confidence_parse, report_build, report_render


class Command(BaseCommand):
    help = ("Agreement report of a study: majority labels after the confidence filter, Fleiss' kappa, Krippendorff's "
            "alpha, win rate, LLM raters vs humans, annotators, with a manifest. Without --output the report goes "
            "to stdout; with it, one JSON line of results is printed.")

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The study's slug.")
        parser.add_argument("--format", dest="fmt", choices=FORMATS, default="json")
        parser.add_argument("--min-confidence", dest="min_confidence", default=None,
                            help="Drop ratings below this confidence (1-5) before the majority vote; default: the study's.")
        parser.add_argument("--output", default=None, help="File to write; the report goes to stdout when absent.")

    def handle(self, *args, slug, fmt, min_confidence, output, **options):
        study = by_name_or_command_error(Study.objects.all(), slug, field="slug")
        try:
            min_confidence = min_confidence_parse(value=min_confidence, study=study)
        except ValueError as exc:
            raise CommandError(f"--min-confidence: {exc}") from None
        if fmt == "png" and output is None:
            raise CommandError("--format png writes binary data: give --output FILE.png")
        report = report_build(study=study, min_confidence=min_confidence)
        content = report_render(report=report, fmt=fmt)
        if output is None:
            if isinstance(content, bytes):
                sys.stdout.buffer.write(content)
            else:
                self.stdout.write(content, ending="")
            return
        path = Path(output)
        if not path.parent.exists():
            raise CommandError(f"--output: folder {path.parent} does not exist.")
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        path.write_bytes(data)
        self.stdout.write(json.dumps({
            "study": study.slug, "format": fmt, "min_confidence": min_confidence, "output": str(path),
            "bytes": len(data), "valid": {key: q["valid"] for key, q in report["questions"].items()},
        }))
