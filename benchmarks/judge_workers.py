"""A judge run of N items on one Celery worker against two workers sharing the queue (issue 19).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres CELERY_BROKER_URL=redis://127.0.0.1:6379/6 \\
    CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/7 .venv/bin/python benchmarks/judge_workers.py [--items 40]

A fresh database (``--database``, default ``grag_bench_workers``) on the server of DATABASE_URL is
migrated and given a study of ``--items`` real SPC test turns (judge.devdata) with the paper's
four questions. Then, for 1 and for 2 workers: that many ``celery worker`` processes (prefork, one
pool process, ``LLM_CPU_THREADS=1``, node names w1, w2) are started on the queue, warmed up with
a small judge run that loads the model in each (not timed), and a judge run of all items with
``shards`` = the number of workers is launched and timed from launch to the Job's success
(worker/shards.py). The workers are stopped before the next round. Both runs judge the same
prompts with the same model, so their choices must agree; the script checks that too.

Prints one JSON line: seconds and judgments per second (one (item, question) verdict = 2
prompts) for each, the speed-up, which workers ran the shards, and the load average before.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SPC_TEST = ROOT.parent / "shared" / "data" / "spc" / "Synthetic-Persona-Chat_test.csv"


def database_recreate(server_url: str, name: str) -> str:
    import psycopg

    admin = urlunsplit(urlsplit(server_url)._replace(path="/postgres")).replace("postgres://", "postgresql://", 1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def worker_start(name: str, env: dict, log_dir: Path) -> subprocess.Popen:
    log = log_dir / f"bench-worker-{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "grag_site", "worker", "-Q", "cpu,gpu", "--pool", "prefork",
         "--concurrency", "1", "-n", f"{name}@%h", "--without-heartbeat", "--without-gossip", "--without-mingle",
         "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115
    )
    deadline = time.monotonic() + 120
    while "ready." not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"worker {name} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.3)
    return proc


def worker_stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_judged(*, study, name: str, shards: int, limit: int | None = None, timeout: float = 3600) -> tuple[float, object]:
    """Launch a judge job over ``study`` in ``shards`` shards; (seconds to success, the Job)."""
    from judge.services import judge_run_create
    from worker.models import Job
    from worker.services import job_launch

    run = judge_run_create(study=study, model_id="smollm2", name=name, limit=limit, min_option_mass=0.0)
    started = time.monotonic()
    job = job_launch(kind=Job.Kind.JUDGE, task="worker.judge", params={"run_id": run.pk, "shards": shards})
    deadline = started + timeout
    while True:
        job.refresh_from_db()
        if job.status in (Job.Status.SUCCEEDED, Job.Status.FAILED, Job.Status.CANCELLED):
            break
        if time.monotonic() > deadline:
            sys.exit(f"judge job {job.pk} did not finish within {timeout} s")
        time.sleep(0.5)
    seconds = time.monotonic() - started
    if job.status != Job.Status.SUCCEEDED:
        sys.exit(f"judge job {job.pk} {job.status}: {job.error}")
    return seconds, job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--database", default="grag_bench_workers")
    args = parser.parse_args()
    for var in ("DATABASE_URL", "CELERY_BROKER_URL"):
        if not os.environ.get(var):
            sys.exit(f"{var} is required (PostgreSQL and Redis: workers share the queue and the database)")

    env = dict(os.environ)
    env.update(DATABASE_URL=database_recreate(os.environ["DATABASE_URL"], args.database),
               DJANGO_SETTINGS_MODULE="grag_site.settings.local", LLM_CPU_THREADS="1", OMP_NUM_THREADS="1",
               HF_HUB_OFFLINE="1")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    import django

    django.setup()
    from annotation.models import DEFAULT_QUESTIONS, Item, Question, Study
    from grag_site.celery import app
    from judge.devdata import spc_judge_pairs
    from judge.models import JudgeVerdict

    def study_make(slug: str, pairs) -> Study:
        study = Study.objects.create(slug=slug, baseline_name="baseline", challenger_name="challenger")
        for order, (key, label, text) in enumerate(DEFAULT_QUESTIONS):
            Question.objects.create(study=study, key=key, label=label, text=text, order=order)
        for pair in pairs:
            Item.objects.create(study=study, key=pair["key"], persona=pair["persona"], history=pair["history"],
                                generic_response=pair["generic_response"], baseline_response=pair["baseline_response"],
                                challenger_response=pair["challenger_response"])
        return study

    pairs = spc_judge_pairs(SPC_TEST, n=args.items + 2)
    study = study_make("bench-workers", pairs[:args.items])
    warm = study_make("bench-warm-up", pairs[args.items:])
    app.control.purge()
    load_before = os.getloadavg()
    log_dir = ROOT / "var"
    log_dir.mkdir(exist_ok=True)
    rounds = {}
    for n in (1, 2):
        workers = [worker_start(f"w{i}", env, log_dir) for i in range(1, n + 1)]
        try:
            run_judged(study=warm, name=f"LLM-warm-{n}", shards=n, limit=n)  # loads the model in every worker
            seconds, job = run_judged(study=study, name=f"LLM-{n}-workers", shards=n)
        finally:
            for proc in workers:
                worker_stop(proc)
        shards = list(job.children.order_by("pk")) or [job]
        rounds[n] = {"seconds": round(seconds, 1), "judgments_per_s": round(args.items * 4 / seconds, 3),
                     "shards": {f"{s.params.get('range', [0, args.items])}": s.worker_host for s in shards}}
    choices = {}
    for n in (1, 2):
        for v in JudgeVerdict.objects.filter(run__name=f"LLM-{n}-workers"):
            choices.setdefault((v.item_id, v.question, v.baseline_side), []).append(
                max(v.probabilities, key=v.probabilities.get))
    agree = sum(1 for c in choices.values() if len(c) == 2 and c[0] == c[1])
    print(json.dumps({
        "items": args.items, "prompts": args.items * 4 * 2, "model": "smollm2", "torch_threads_per_worker": 1,
        "one_worker": rounds[1], "two_workers": rounds[2],
        "speedup": round(rounds[1]["seconds"] / rounds[2]["seconds"], 2),
        "choices_agree": f"{agree}/{len(choices)}", "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
    }))


if __name__ == "__main__":
    main()
