"""run_icl --dataset NAME --method icl_hist|icl_tst [--split test] [--n-shot 0..5] [--seeds 0,1,2,3,4] [--model M] [--limit N]"""
import json

from django.core.management.base import BaseCommand, CommandError

from modeling.llm.backends import LLMBackendError
from modeling.llm.loading import ModelNotFound
from modeling.llm_services import LLMServiceError, icl_generate
from modeling.management.options import batch_size_checked, dataset_by_name


def _seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"--seeds must be comma-separated integers, e.g. 0,1,2,3,4; got {text!r}") from None


class Command(BaseCommand):
    help = (
        "Run an ICL baseline (paper section 4.2.1): ICL(Hist) from persona + history, ICL(TST) rewriting the "
        "generic response in the persona's voice, with n demonstrations from the training split; one system "
        "per seed (five by default for n > 0). Prints one JSON line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--method", required=True, choices=["icl_hist", "icl_tst"])
        parser.add_argument("--split", default="test")
        parser.add_argument("--n-shot", type=int, default=0, help="0..5 demonstrations.")
        parser.add_argument("--seeds", default="0,1,2,3,4", help="Comma-separated; only the first is used for n=0.")
        parser.add_argument("--shot-split", default="train", help="Where demonstrations come from (default train).")
        parser.add_argument("--model", default="smollm2",
                            help="Hub id or folder (paper: Qwen/Qwen2.5-32B-Instruct in 4-bit), "
                                 "openai:<model>@<url>, or smollm2.")
        parser.add_argument("--limit", type=int, default=None)
        parser.add_argument("--batch-size", type=int, default=8)

    def handle(self, *args, **opts):
        dataset = dataset_by_name(opts["dataset"])
        batch_size_checked(opts["batch_size"])
        try:
            systems = icl_generate(
                dataset=dataset, split=opts["split"], method=opts["method"], n_shot=opts["n_shot"],
                seeds=_seeds(opts["seeds"]), model_id=opts["model"], limit=opts["limit"],
                batch_size=opts["batch_size"], shot_split=opts["shot_split"],
            )
        except (LLMServiceError, ModelNotFound, LLMBackendError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(json.dumps({
            "systems": [s.name for s in systems],
            "seed_group": systems[0].config["seed_group"],
            "responses": sum(s.config["run"]["responses"] for s in systems),
            "generated": sum(s.config["run"]["generated"] for s in systems),
            "cached": sum(s.config["run"]["cached"] for s in systems),
            "degenerate": {s.name: s.config["run"]["degenerate"] for s in systems},
        }))
