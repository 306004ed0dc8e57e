"""compute_metrics SYSTEM [--split test] [--bert-model PATH] [--bert-layer N] [--no-bert]"""
import json

from django.core.management.base import BaseCommand, CommandError

from common.lookup import by_name_or_command_error
from modeling.metric_services import MetricsError, metrics_compute
from modeling.models import System


class Command(BaseCommand):
    help = (
        "Compute Char-F1, ROUGE-1/2/L, BLEU, BPC and BERTScore for a system's responses and store them "
        "per sample and per run. Prints one JSON line."
    )

    def add_arguments(self, parser):
        parser.add_argument("system", help="System name.")
        parser.add_argument("--split", default="test")
        parser.add_argument(
            "--bert-model", default=None,
            help="BERTScore model: a name (default roberta-large, or $BERTSCORE_MODEL), a local folder, "
                 "or 'minilm' (bundled all-MiniLM-L6-v2, offline).",
        )
        parser.add_argument("--bert-layer", type=int, default=None, help="Layer to embed with (needed for a folder).")
        parser.add_argument("--no-bert", action="store_true", help="Skip BERTScore.")

    def handle(self, *args, **opts):
        system = by_name_or_command_error(System.objects.all(), opts["system"])
        try:
            report = metrics_compute(
                system=system, split=opts["split"], bert_model=opts["bert_model"], bert_layer=opts["bert_layer"],
                bert=not opts["no_bert"],
            )
        except MetricsError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(report.as_dict()))
