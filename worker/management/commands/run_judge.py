"""`python manage.py run_judge SLUG --model M [--name RUN] [--limit N] [--queue]`: an LLM judge run.

``--systems BASELINE CHALLENGER`` judges two systems' stored responses on a set of samples larger
than any human study (the paper's 2,000 SPC test turns, section 5.5): the first time, it creates
study SLUG from the samples both systems answered (``--split``, a seeded subset of ``--limit``),
open to no annotator; later runs reuse it.
"""
import json
import time

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Study
from annotation.services import study_judge_only_get_or_create
from common.lookup import by_name_or_command_error
from judge.prompts import DEFAULT_PROMPT_VERSION, PROMPTS
from judge.reliability import DEFAULT_MIN_OPTION_MASS, reliability_label
from judge.services import JudgeRunError, judge_default_model, judge_run_create, judge_run_execute
from modeling.llm.loading import ModelNotFound, resolve_model
from modeling.models import System
from worker.models import Job
from worker.services import BrokerUnavailable, job_launch


class Command(BaseCommand):
    help = (
        "Judge a study's items with an LLM in both orders and store the verdicts as Ratings of an LLM rater "
        "named after the run. Running it again with the same name resumes the run. Prints one JSON line: "
        '{"run", "items", "ratings", "consistency", "abstained", "reliability", "seconds"}; reliability is '
        '{"verdict": reliable | warnings | unreliable, "reasons": [...], "checks": {...}} (docs/judge.md).'
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="Slug of the study to judge.")
        parser.add_argument("--model", default=None,
                            help="Judge model id or folder (default: Qwen/Qwen2.5-32B-Instruct with CUDA, else smollm2).")
        parser.add_argument("--name", default=None, help="Run name, which becomes the rater name (default LLM-<slug>).")
        parser.add_argument("--limit", type=int, default=None, help="Judge only the first N items.")
        parser.add_argument("--prompt-version", default=None, choices=sorted(PROMPTS),
                            help=f"Judge prompt (default {DEFAULT_PROMPT_VERSION}; a resumed run keeps its own).")
        parser.add_argument("--min-option-mass", type=float, default=None,
                            help=f"A verdict whose option letters get less of the next-token probability abstains "
                                 f"(0-1; default {DEFAULT_MIN_OPTION_MASS} for a new run; a resumed run keeps its own).")
        parser.add_argument("--queue", action="store_true", help="Send the run to a worker instead of running it here.")
        parser.add_argument("--shards", type=int, default=None,
                            help="With --queue: split the items into N shards that the queue's free workers judge in "
                                 "parallel (default: from JOB_SHARDS; docs/llm.md, 'Several workers').")
        parser.add_argument("--systems", nargs=2, metavar=("BASELINE", "CHALLENGER"), default=None,
                            help="Judge these two systems' stored responses: creates study SLUG from the samples both "
                                 "answered (a seeded subset of --limit) the first time, reuses it later.")
        parser.add_argument("--split", default="test", help="With --systems: the samples' split (default test).")
        parser.add_argument("--seed", type=int, default=0, help="With --systems: seed of the subset of --limit samples.")

    def handle(self, *args, **opts):
        if opts["shards"] is not None and (opts["shards"] < 1 or not opts["queue"]):
            raise CommandError("--shards needs --queue and a number of at least 1 (the workers judge the shards).")
        if opts["systems"]:
            study = self._systems_study(opts)
        else:
            study = by_name_or_command_error(
                Study.objects.all(), opts["study"], field="slug",
                hint="`import_study` creates one, or pass --systems BASELINE CHALLENGER to judge two systems' stored responses.",
            )
        model_id = opts["model"] or judge_default_model()
        started = time.monotonic()
        try:
            if not opts["queue"]:
                # Fail at once with the loader's message when the model is not on this machine.

                try:
                    resolve_model(model_id)
                except ModelNotFound as exc:
                    raise CommandError(str(exc)) from None
            run = judge_run_create(study=study, model_id=model_id, name=opts["name"],
                                   prompt_version=opts["prompt_version"], limit=opts["limit"],
                                   min_option_mass=opts["min_option_mass"])
            if opts["queue"]:
                try:
                    job = job_launch(kind=Job.Kind.JUDGE, task="worker.judge",
                                     params={"run_id": run.pk, "limit": opts["limit"],
                                             **({"shards": opts["shards"]} if opts["shards"] else {})})
                except BrokerUnavailable as exc:
                    raise CommandError(str(exc)) from None
                self.stdout.write(json.dumps({"run": run.name, "job": job.pk, "status": "queued"}))
                return
            summary = judge_run_execute(run=run, limit=opts["limit"])
        except JudgeRunError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps({
            "run": run.name, "items": summary["items"], "ratings": summary["ratings"],
            "consistency": summary["consistency"], "abstained": summary["abstained"],
            "reliability": summary["reliability"], "seconds": round(time.monotonic() - started, 2),
        }))
        if summary["reliability"]["verdict"] != "reliable":
            self.stderr.write(f"Judge run {run.name} is {reliability_label(summary['reliability'])}")

    def _systems_study(self, opts) -> Study:
        systems = [by_name_or_command_error(System.objects.all(), name) for name in opts["systems"]]
        try:
            return study_judge_only_get_or_create(slug=opts["study"], baseline=systems[0], challenger=systems[1],
                                                  split=opts["split"], limit=opts["limit"], seed=opts["seed"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
