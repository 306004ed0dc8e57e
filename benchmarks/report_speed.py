"""Time the agreement report of a large study on PostgreSQL (issue 5: under 2 s), and the
Bradley-Terry bootstrap of the systems ranking (issue 20: 1,000 resamples over 20 systems under 5 s).

Builds 2,000 items x 4 questions x 4 raters (3 humans + 1 LLM judge run: 32,000 ratings) with
bulk_create in a scratch database on the server of DATABASE_URL (created, migrated and dropped
here), then times the JSON report and the HTML report (build + render, Figure 2 included) from
a cold Django process's first call and as the best of a few warm calls. Prints one JSON line.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/grag .venv/bin/python benchmarks/report_speed.py [--items 2000]
    .venv/bin/python benchmarks/report_speed.py --bt-only    # the ranking bootstrap alone, no database

The report includes everything issue 20 added (AC1 and item-bootstrap intervals, prediction-powered
shares, the judge audit with its order verdicts and probabilities in Rating.meta, power).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def scratch_url(url: str, name: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path=f"/{name}"))


def admin_execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(scratch_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="warm calls per format; the best is reported")
    parser.add_argument("--db-name", default=f"grag_bench_reports_{os.getpid()}")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one warm HTML report to stderr")
    parser.add_argument("--bt-only", action="store_true", help="time only the Bradley-Terry bootstrap (no database)")
    parser.add_argument("--systems", type=int, default=20, help="systems in the Bradley-Terry bootstrap")
    parser.add_argument("--resamples", type=int, default=1000, help="Bradley-Terry bootstrap resamples")
    args = parser.parse_args()
    if args.bt_only:
        print(json.dumps(bt_bootstrap_timing(args)))
        return

    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith(("postgres://", "postgresql://")):
        sys.exit("Set DATABASE_URL to a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/grag "
                 "(a scratch database is created next to it and dropped afterwards).")
    admin_execute(base_url, f'CREATE DATABASE "{args.db_name}"')
    try:
        os.environ["DATABASE_URL"] = scratch_url(base_url, args.db_name)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grag_site.settings.local")
        result = run(args)
    finally:
        from django.db import connections

        connections.close_all()
        admin_execute(base_url, f'DROP DATABASE IF EXISTS "{args.db_name}"')
    print(json.dumps({**result, **bt_bootstrap_timing(args)}))


def bt_bootstrap_timing(args) -> dict:
    """Seconds for ``ranking.bt_ranking`` over ``args.systems`` systems, 3 studies per system, 145 items each."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    import importlib.util

    # Load the Django-free module directly: reports' package __init__ imports Django models.
    spec = importlib.util.spec_from_file_location("ranking", ROOT / "annotation" / "reports" / "ranking.py")
    ranking = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ranking)
    rng = np.random.default_rng(0)
    k = args.systems
    strength = rng.normal(0, 0.7, size=k)
    comparisons = []
    for n in range(3 * k):
        a, b = n % k, (n + 1 + n // k) % k  # a ring with steps 1, 2, 3: every system meets six others
        p = 1 / (1 + np.exp(strength[a] - strength[b]))  # challenger b beats baseline a
        ties = rng.binomial(145, 0.6)
        cw = rng.binomial(145 - ties, p)
        comparisons.append((a, b, 145 - ties - cw, cw, ties))
    start, start_cpu = time.perf_counter(), time.process_time()
    rows = ranking.bt_ranking(systems=[f"s{i}" for i in range(k)], comparisons=comparisons, resamples=args.resamples, seed=0)
    return {
        "bt_systems": k, "bt_studies": len(comparisons), "bt_resamples": args.resamples,
        "bt_bootstrap_s": round(time.perf_counter() - start, 3), "bt_bootstrap_cpu_s": round(time.process_time() - start_cpu, 3),
        "bt_target_s": 5.0, "bt_ranked": len(rows),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def run(args) -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)

    import numpy as np
    from django.contrib.auth.models import User
    from django.utils import timezone

    from annotation.models import DEFAULT_QUESTIONS, Assignment, Item, Question, Rating, Study
    from judge.models import JudgeRun

    rng = np.random.default_rng(0)
    study = Study.objects.create(slug="bench", baseline_name="PreSFT(Hist)", challenger_name="PostGRAG", overlap=3)
    Question.objects.bulk_create(
        [Question(study=study, key=k, label=label, text=text, order=i) for i, (k, label, text) in enumerate(DEFAULT_QUESTIONS)]
    )
    JudgeRun.objects.create(name="LLM-2000", study=study, model_id="smollm2", prompt_version="v1", status="succeeded")
    Item.objects.bulk_create(
        [Item(study=study, key=f"spc/test/{n}", baseline_response="b", challenger_response="c") for n in range(args.items)],
        batch_size=1000,
    )
    items = list(Item.objects.filter(study=study).order_by("pk"))
    humans = [User.objects.create_user(f"annotator{h}") for h in range(3)]
    now = timezone.now()
    sides = rng.choice(["A", "B"], size=(len(items), len(humans)))
    Assignment.objects.bulk_create(
        [Assignment(item=item, annotator=user, baseline_side=sides[i, h], status="completed", reserved_at=now,
                    expires_at=now, completed_at=now, seconds=float(rng.uniform(5, 60)))
         for i, item in enumerate(items) for h, user in enumerate(humans)],
        batch_size=2000,
    )
    labels = np.array(["baseline", "challenger", "similar"])
    # A latent preference per item and question, so raters agree more often than chance.
    latent = rng.choice(3, p=[0.25, 0.3, 0.45], size=(len(items), len(DEFAULT_QUESTIONS)))
    ratings = []
    for i, item in enumerate(items):
        for q, (key, _label, _text) in enumerate(DEFAULT_QUESTIONS):
            for h, user in enumerate(humans):
                choice = latent[i, q] if rng.random() < 0.7 else rng.integers(3)
                side = sides[i, h]
                shown = "S" if choice == 2 else ("A" if (choice == 0) == (side == "A") else "B")
                ratings.append(Rating(item=item, question=key, rater=user.username, annotator=user, choice=labels[choice],
                                      shown_choice=shown, baseline_side=side, confidence=int(rng.integers(1, 6))))
            choice = latent[i, q] if rng.random() < 0.6 else rng.integers(3)
            probabilities = dict(zip(labels.tolist(), rng.dirichlet(np.ones(3)).round(6).tolist()))
            # What judge.services stores: both orders' choices, averaged probabilities, the flip flag.
            meta = {"probabilities": probabilities, "orders": {"A": str(labels[choice]), "B": str(labels[choice])},
                    "flipped": False}
            ratings.append(Rating(item=item, question=key, rater="LLM-2000", rater_kind="llm", choice=labels[choice],
                                  confidence=int(rng.integers(1, 6)), meta=meta))
    Rating.objects.bulk_create(ratings, batch_size=4000)
    n_ratings = Rating.objects.filter(item__study=study).count()

    from reports import report_build, report_render

    cpu: dict[str, float] = {}

    def timed(fmt: str) -> tuple[float, int]:
        start, start_cpu = time.perf_counter(), time.process_time()
        output = report_render(report=report_build(study=study), fmt=fmt)
        # CPU seconds of this process too: on a shared machine wall time includes waiting for a core.
        cpu[fmt] = min(cpu.get(fmt, float("inf")), time.process_time() - start_cpu)
        return time.perf_counter() - start, len(output)

    json_first, json_bytes = timed("json")
    if args.profile:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(timed, "html")
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(60)
    html_first, html_bytes = timed("html")
    json_warm = min(timed("json")[0] for _ in range(args.repeats))
    html_warm = min(timed("html")[0] for _ in range(args.repeats))
    return {
        "benchmark": "report_speed",
        "database": "postgresql",
        "items": len(items),
        "questions": len(DEFAULT_QUESTIONS),
        "raters": len(humans) + 1,
        "ratings": n_ratings,
        "json_first_s": round(json_first, 3),
        "html_first_s": round(html_first, 3),
        "json_s": round(json_warm, 3),
        "html_s": round(html_warm, 3),
        "json_cpu_s": round(cpu["json"], 3),
        "html_cpu_s": round(cpu["html"], 3),
        "json_bytes": json_bytes,
        "html_bytes": html_bytes,
        "target_s": 2.0,
        "cpus": os.cpu_count(),
        # Other work on the machine slows every figure above: say how busy it was.
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    main()
