"""results_table --systems A,B,... --baseline A --challengers C,D --format csv|json|tex|html [--output F]"""
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from modeling.models import System
from modeling.tables import FORMATS, TableError, result_table, table_export


def _names(value: str | None) -> list[str]:
    return [n.strip() for n in (value or "").split(",") if n.strip()]


class Command(BaseCommand):
    help = (
        "Export a Table 3 style result table (GRAG paper) of systems' stored metrics: best per column in bold, "
        "imprv (%) rows of each challenger over the baseline. Writes the table to stdout, or to --output "
        "and then prints one JSON line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--systems", help="Comma-separated system names, in row order "
                                              "(default: the baseline, then the challengers).")
        parser.add_argument("--baseline", help="System the imprv (%%) rows compare against.")
        parser.add_argument("--challengers", default="", help="Comma-separated system names.")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--split", default="test")
        parser.add_argument("--output", help="File to write; stdout when omitted.")

    def handle(self, *args, **opts):
        baseline_name = opts["baseline"]
        challenger_names = _names(opts["challengers"])
        names = _names(opts["systems"]) or [n for n in [baseline_name, *challenger_names] if n]
        if not names:
            raise CommandError("Name the systems: --systems A,B,... (or --baseline and --challengers).")
        if len(set(names)) != len(names):
            raise CommandError(f"--systems names a system twice: {','.join(names)}.")
        found = {s.name: s for s in System.objects.filter(name__in=names).select_related("dataset")}
        unknown = [n for n in names if n not in found]
        if unknown:
            known = ", ".join(System.objects.values_list("name", flat=True)[:30]) or "none"
            raise CommandError(f"Unknown system(s): {', '.join(unknown)}. Known systems: {known}.")
        for label, chosen in (("--baseline", [baseline_name] if baseline_name else []),
                              ("--challengers", challenger_names)):
            outside = [n for n in chosen if n not in found]
            if outside:
                raise CommandError(f"{label} {', '.join(outside)} must be among --systems ({', '.join(names)}).")
        try:
            table = result_table(
                systems=[found[n] for n in names], baseline=found.get(baseline_name) if baseline_name else None,
                challengers=[found[n] for n in challenger_names], split=opts["split"],
            )
        except TableError as exc:
            raise CommandError(str(exc)) from exc
        text = table_export(table, opts["format"])
        if not opts["output"]:
            self.stdout.write(text, ending="" if text.endswith("\n") else "\n")
            return
        path = Path(opts["output"]).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc}") from exc
        self.stdout.write(json.dumps({
            "output": str(path), "format": opts["format"], "split": table.split, "rows": len(table.rows),
            "improvements": len(table.improvements), "baseline": table.baseline,
            "best": {r.system: sorted(r.best) for r in table.rows},
        }))
