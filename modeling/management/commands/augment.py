"""augment --dataset NAME --split SPLIT [--model smollm2] [--limit N] [--batch-size 8] [--prompt-version V]"""
import json

from django.core.management.base import BaseCommand, CommandError

from modeling.llm.backends import LLMBackendError
from modeling.llm.loading import ModelNotFound
from modeling.llm.prompts import UnknownPromptVersion
from modeling.llm_services import LLMServiceError, augment_dataset
from modeling.management.options import batch_size_checked, dataset_by_name


class Command(BaseCommand):
    help = (
        "Generate the generic response R_G of every sample of a dataset split with an instruct LLM "
        "(paper section 3.1), reusing cached generations. Prints one JSON line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="Dataset name.")
        parser.add_argument("--split", default="train", help="train, valid or test (default train).")
        parser.add_argument("--model", default="smollm2",
                            help="Hub id or folder (paper: meta-llama/Llama-3.1-8B-Instruct in 4-bit on CUDA), "
                                 "openai:<model>@<url> for a server, or smollm2 (offline default).")
        parser.add_argument("--limit", type=int, default=None, help="Only the first N samples.")
        parser.add_argument("--batch-size", type=int, default=8)
        parser.add_argument("--prompt-version", default=None, help="Template version (default: the dataset's latest).")

    def handle(self, *args, **opts):
        dataset = dataset_by_name(opts["dataset"])
        batch_size_checked(opts["batch_size"])
        try:
            summary = augment_dataset(
                dataset=dataset, split=opts["split"], model_id=opts["model"], limit=opts["limit"],
                batch_size=opts["batch_size"], prompt_version=opts["prompt_version"],
            )
        except (LLMServiceError, ModelNotFound, LLMBackendError, UnknownPromptVersion) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps(summary))
