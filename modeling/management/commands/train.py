"""`python manage.py train`: train one GRAG method or PreSFT baseline in the foreground.

Prints one JSON line (the run summary). Resumes from the system's checkpoint when rerun.
"""
import json

from django.core.management.base import BaseCommand, CommandError

from modeling.grag.config import METHODS
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
        parser.add_argument("--epochs", type=int, default=1)
        parser.add_argument("--max-steps", type=int)
        parser.add_argument("--batch-size", type=int, default=8)
        parser.add_argument("--grad-accum", type=int, default=1)
        parser.add_argument("--lr", type=float, default=1e-4)
        parser.add_argument("--alpha", type=float, default=0.5)
        parser.add_argument("--beta", type=float, default=1e-2)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                            help="any other GRAGConfig field, e.g. --set max_source_len=256")

    def handle(self, *args, **opts):
        from modeling.grag_services import system_create, train_system

        dataset = dataset_by_name(opts["dataset"])
        config = {k: opts[k] for k in ("epochs", "max_steps", "batch_size", "grad_accum", "lr", "alpha", "beta", "seed", "limit", "split")}
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
            raise CommandError(str(exc))
        self.stdout.write(json.dumps(result))
