"""`python manage.py train`: train one GRAG method or PreSFT baseline in the foreground.

Prints one JSON line (the run summary). Resumes from the system's checkpoint when rerun.
"""
import json

from django.core.management.base import BaseCommand, CommandError

from modeling.grag.config import LAUNCH_KEYS, METHODS, launch_fields
from modeling.grag_services import system_create, train_system
from modeling.llm.loading import ModelNotFound
from modeling.management.options import dataset_by_name


class Command(BaseCommand):
    help = "Train a GRAG model (PreSFT(Hist), PreSFT(TST), PreGRAG or PostGRAG) on a dataset split."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--method", required=True, choices=METHODS)
        parser.add_argument("--backbone", default="smollm2", help="model id/folder, or tiny:bart|tiny:t5|tiny:llama|tiny:gpt2")
        parser.add_argument("--system", help="system name (default <dataset>-<method>)")
        parser.add_argument("--split", default="train")
        parser.add_argument("--valid-split", help="default: the dataset's 'valid' split when present")
        parser.add_argument("--limit", type=int)
        for spec in launch_fields():  # defaults and help from GRAGConfig, the one definition
            kind = float if spec.type in (float, "float") else int
            default = 1 if spec.name == "epochs" else spec.default  # one epoch from the command line; paper: 20
            parser.add_argument(f"--{spec.name.replace('_', '-')}", type=kind, default=default,
                                help=f"{spec.metadata['help']} (default {default})")
        parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                            help="any other GRAGConfig field, e.g. --set max_source_len=256")

    def handle(self, *args, **opts):
        dataset = dataset_by_name(opts["dataset"])
        config = {k: opts[k] for k in (*LAUNCH_KEYS, "limit", "split")}
        config["valid_split"] = opts["valid_split"]
        for item in opts["set"]:
            key, _, value = item.partition("=")
            try:
                config[key] = json.loads(value)
            except json.JSONDecodeError:
                config[key] = value
        name = opts["system"] or f"{dataset.name}-{opts['method']}"
        try:
            system = system_create(name=name, dataset=dataset, method=opts["method"], backbone=opts["backbone"],
                                   config={k: v for k, v in config.items() if v is not None})
            result = train_system(system=system)
        except (ValueError, TypeError, ModelNotFound) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps(result))
