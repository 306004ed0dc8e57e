"""`python manage.py demo`: the whole GRAG pipeline on CPU with the offline SmolLM2 model.

Imports a dataset (the bundled demo data by default), creates an admin and three demo
annotators, then runs: generic responses -> a few training steps of each method -> generation
-> metrics -> a study of baseline vs challenger -> an LLM judge run.

With --no-serve the pipeline runs in this process and a JSON summary is printed. Without it,
a Celery worker and the web server are started, the pipeline is launched on the worker, and the
URL and logins are printed so the admin can watch it in the browser (Ctrl-C stops both).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Rating, Study
from common.processes import stop_process_group
from common.threads import THREADS_ENV, shared_cpu_default, torch_threads_apply
from modeling.importers.service import dataset_import
from modeling.models import Dataset, MetricResult, Sample, System
from worker.jobs import log_tail_append
from worker.models import Job
from worker.pipeline import PipelinePlan, PlanError, pipeline_check, pipeline_create, pipeline_launch
from worker.registry import task_for_kind

DEMO_DIR = Path(settings.BASE_DIR) / "data" / "demo"
DEMO_PASSWORD = "grag-demo"  # local demo only; printed so the admin can log in
ANNOTATORS = ["annotator1", "annotator2", "annotator3"]


def guess_kind(path: Path) -> str:
    """The importer for a data path: by folder content, extension and file name."""
    if path.is_dir():
        if (path / "full_dialog.csv").exists():
            return "pfg"
        raise CommandError(f"{path} is a folder without full_dialog.csv; pass a file or a PFG folder.")
    name = path.name.lower()
    if name.endswith(".jsonl"):
        return "jsonl"
    if name.endswith(".txt"):
        return "convai2"
    if "persona" in name and name.endswith(".csv"):
        return "spc"
    if name.endswith(".csv"):
        return "ed"
    raise CommandError(f"Cannot tell the format of {path}; use import_dataset first, then demo --dataset NAME.")


class Command(BaseCommand):
    help = "Run the whole GRAG pipeline on CPU with the offline model (see module docstring)."

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="Run in the foreground and print a JSON summary.")
        parser.add_argument("--data", type=Path, help="Dataset file or folder (default: the bundled demo data).")
        parser.add_argument("--limit", type=int, default=None, help="Import at most N conversations.")
        parser.add_argument("--train-limit", type=int, default=48, help="Training samples (default 48).")
        parser.add_argument("--eval-limit", type=int, default=8, help="Test samples generated, scored and rated (default 8).")
        parser.add_argument("--max-steps", type=int, default=6, help="Optimiser steps per trained method (default 6).")
        parser.add_argument("--port", type=int, default=8000, help="Port of the web server (default 8000).")
        parser.add_argument("--no-judge", action="store_true", help="Leave out the LLM-judge stage.")

    def handle(self, *args, **opts):
        path = opts["data"] or self._demo_file()
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        kind = guess_kind(path)
        name = "demo" if opts["data"] is None else None
        report = dataset_import(kind=kind, path=str(path), name=name, limit=opts["limit"]).as_dict()
        dataset = Dataset.objects.get(name=report["dataset"])
        splits = set(dataset.samples.values_list("split", flat=True).distinct())
        train_split = "train" if "train" in splits else sorted(splits)[0]
        eval_split = next((s for s in ("test", "valid") if s in splits and s != train_split), train_split)
        logins = self._users()
        plan = PipelinePlan(
            dataset=dataset.name, train_split=train_split, eval_split=eval_split,
            train_limit=opts["train_limit"], eval_limit=opts["eval_limit"], max_steps=opts["max_steps"],
            judge=not opts["no_judge"],
        )
        try:  # a plan whose stages need data no earlier stage writes fails now, not minutes in
            pipeline_check(plan)
        except PlanError as exc:
            raise CommandError(str(exc)) from exc
        admin = User.objects.get(username="admin")
        if opts["no_serve"]:
            summary = self._run_foreground(plan, admin)
            summary.update(import_report=report, logins=logins)
            self.stdout.write(json.dumps(summary))
            return
        self._serve(plan, admin, logins, opts["port"])

    def _demo_file(self) -> Path:
        files = sorted(DEMO_DIR.glob("*.jsonl"))
        if not files:
            raise CommandError(f"No demo dataset in {DEMO_DIR}.")
        return files[0]

    def _users(self) -> dict:
        admin, _ = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        admin.is_staff = admin.is_superuser = True
        admin.set_password(DEMO_PASSWORD)
        admin.save()
        for username in ANNOTATORS:
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(DEMO_PASSWORD)
            user.save()
        return {"admin": DEMO_PASSWORD, **{u: DEMO_PASSWORD for u in ANNOTATORS}}

    def _give_study_to_annotators(self, slug: str) -> None:
        study = Study.objects.filter(slug=slug).first()
        if study:
            study.annotators.add(*User.objects.filter(username__in=ANNOTATORS))

    def _run_foreground(self, plan: PipelinePlan, admin: User) -> dict:
        """Run every stage in this process, in order, through the same tasks a worker runs."""
        from celery import current_app as app

        # lazy: importing worker.tasks loads every stage's services; only the foreground run needs them
        import worker.tasks  # noqa: F401  (registers every stage's task in this process)

        # The same thread count the served demo gives its worker (see _serve).
        os.environ.setdefault(THREADS_ENV, str(shared_cpu_default()))
        torch_threads_apply()
        started = time.monotonic()
        parent, children = pipeline_create(plan=plan, user=admin)
        plan = PipelinePlan(**parent.params)  # as run: its study slug is this pipeline's
        app.tasks["worker.pipeline_start"](parent.pk)
        for child in children:
            self.stderr.write(f"[{time.monotonic() - started:6.0f}s] {child.get_kind_display()} {child.params}")
            try:
                app.tasks[task_for_kind(child.kind)](child.pk)
            except Exception as exc:
                app.tasks["worker.pipeline_failed"](parent.pk)
                child.refresh_from_db()
                raise CommandError(f"Stage {child} failed: {child.error or exc}") from exc
            if child.kind == Job.Kind.STUDY:
                self._give_study_to_annotators(plan.slug())
        app.tasks["worker.pipeline_finish"](parent.pk)
        summary = self._summary(plan)
        summary["seconds"] = round(time.monotonic() - started, 1)
        summary["pipeline_job"] = parent.pk
        return summary

    def _summary(self, plan: PipelinePlan) -> dict:
        systems = System.objects.filter(name__in=[plan.system_name(m) for m in plan.methods])
        metrics = {
            s.name: {m.name: round(m.value, 4) for m in MetricResult.objects.filter(system=s, sample__isnull=True)}
            for s in systems
        }
        study = Study.objects.filter(slug=plan.slug()).first()
        return {
            "dataset": plan.dataset,
            "samples": Sample.objects.filter(dataset__name=plan.dataset).count(),
            "generic_responses": Sample.objects.filter(dataset__name=plan.dataset).exclude(generic_response="").count(),
            "systems": sorted(s.name for s in systems),
            "responses": {s.name: s.responses.count() for s in systems},
            "metrics": metrics,
            # A generated study opens only when its giveaway and degenerate checks flag nothing.
            "study": {"slug": study.slug, "items": study.items.count(), "open": study.is_open,
                      "check": study.meta.get("check", {})} if study else None,
            "judge_ratings": Rating.objects.filter(item__study=study, rater_kind="llm").count() if study else 0,
            # SmolLM2 is no judge (its option letters get ~10 % of the probability): the run says so.
            "judge_runs": {run.name: run.reliability for run in study.judge_runs.all()} if study else {},
        }

    def _serve(self, plan: PipelinePlan, admin: User, logins: dict, port: int) -> None:
        # SIGTERM (and SIGHUP: a closed terminal) stop the demo like Ctrl-C, so the `finally` below stops the
        # worker and the server it started instead of leaving them holding port 8000. `make` passes its SIGTERM on.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt)
        root = Path(settings.BASE_DIR)
        env = dict(os.environ)
        # The worker's torch threads: a demo usually shares its CPU (an IDE, a browser, other jobs),
        # where torch's default of one spinning thread per core ran the generic-response stage
        # at 0.06 per second. LLM_CPU_THREADS set by the user wins (docs/jobs-and-demo.md).
        env.setdefault(THREADS_ENV, str(shared_cpu_default()))
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "grag_site", "worker", "-Q", "cpu,gpu", "--pool", "solo",
             "--loglevel", "INFO"], cwd=root, env=env, stdout=open(root / "var" / "demo-worker.log", "w"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        web = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], cwd=root, env=env,
            start_new_session=True,
        )
        parent = pipeline_launch(plan=plan, user=admin)
        plan = PipelinePlan(**parent.params)  # as run: its study slug is this pipeline's
        url = f"http://127.0.0.1:{port}"
        self.stdout.write(
            f"\nGRAG demo running at {url}\n"
            f"  watch the pipeline: {url}/jobs/{parent.pk}/\n"
            f"  admin login: admin / {DEMO_PASSWORD}\n"
            f"  annotators (study '{plan.slug()}' once created; it stays closed while its check flags responses,\n"
            f"  staff open it on its page after review): "
            + ", ".join(f"{u} / {p}" for u, p in logins.items() if u != "admin")
            + f"\n  worker log: var/demo-worker.log (torch threads: {env[THREADS_ENV]}, from {THREADS_ENV})"
            + "\nPress Ctrl-C to stop.\n"
        )
        try:
            while worker.poll() is None and web.poll() is None:
                time.sleep(2)
                if Job.objects.filter(kind=Job.Kind.STUDY, parent=parent, status=Job.Status.SUCCEEDED).exists():
                    self._give_study_to_annotators(plan.slug())
        except KeyboardInterrupt:
            pass
        finally:
            # `make` passes its SIGTERM on, so a second one can arrive while we stop: ignore it, or it
            # would interrupt the clean-up and leave the worker running.
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
            self.stdout.write("Stopping the web server and the worker…")
            for proc in (web, worker):
                stop_process_group(proc, timeout=10)
            stopped = pipeline_cancel_unfinished(parent)
            if stopped:
                self.stdout.write(f"Marked {len(stopped)} unfinished job(s) of pipeline #{parent.pk} cancelled "
                                  f"({', '.join(str(job) for job in stopped)}); Retry on /jobs/{parent.pk}/ resumes them.")


def pipeline_cancel_unfinished(parent: Job) -> list[Job]:
    """Mark the pipeline ``parent`` and its stages (and their shards) that are still queued or running
    cancelled, with a log line each; for a demo whose worker is gone, nothing else would. Their
    tasks are idempotent, so Retry resumes them. Returns the jobs marked, pipeline first. One transaction."""
    unfinished = [Job.Status.QUEUED, Job.Status.RUNNING]
    with transaction.atomic():
        jobs = list(Job.objects.select_for_update(of=("self",)).filter(
            Q(pk=parent.pk) | Q(parent=parent) | Q(parent__parent=parent), status__in=unfinished).order_by("pk"))
        for job in jobs:
            job.log_tail = log_tail_append(job.log_tail, "cancelled: the demo that ran it stopped (Retry resumes it)")
            Job.objects.filter(pk=job.pk).update(status=Job.Status.CANCELLED, cancel_requested=True,
                                                 finished_at=timezone.now(), log_tail=job.log_tail)
    return jobs


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)
