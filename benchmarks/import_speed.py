"""Time import_dataset on the real files of ../shared/data (SPC test, PFG, ConvAI2 valid).

For each file: the parse alone, the first import (one transaction, bulk inserts) and a second
import of the same file (recognised by its hash: unchanged, nothing written). Runs in a scratch
PostgreSQL database created next to DATABASE_URL and dropped afterwards. Prints one JSON line.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python benchmarks/import_speed.py
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

FILES = [
    ("spc", DATA / "spc" / "Synthetic-Persona-Chat_test.csv"),
    ("pfg", DATA / "pfg"),
    ("convai2", DATA / "convai2" / "valid_self_original_no_cands.txt"),
]


def scratch_url(url: str, name: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


def admin_execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(scratch_url(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql)


def run() -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    from modeling.importers import PARSERS
    from modeling.importers.service import dataset_import

    call_command("migrate", verbosity=0, interactive=False)
    figures = {}
    for kind, path in FILES:
        if not path.exists():
            figures[kind] = "missing"
            continue
        started = time.perf_counter()
        PARSERS[kind](path)
        parse_s = time.perf_counter() - started
        started = time.perf_counter()
        report = dataset_import(kind=kind, path=path)
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        again = dataset_import(kind=kind, path=path)
        second_s = time.perf_counter() - started
        assert again.unchanged
        figures[kind] = {
            "conversations": report.conversations, "samples": report.samples, "parse_s": round(parse_s, 2),
            "import_s": round(first_s, 2), "samples_per_s": round(report.samples / first_s),
            "reimport_unchanged_s": round(second_s, 2),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-name", default=f"grag_bench_import_{os.getpid()}")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith(("postgres://", "postgresql://")):
        sys.exit("Set DATABASE_URL to a PostgreSQL server (a scratch database is created next to it and dropped).")
    admin_execute(base_url, f'CREATE DATABASE "{args.db_name}"')
    try:
        os.environ["DATABASE_URL"] = scratch_url(base_url, args.db_name)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "grag_site.settings.local")
        figures = run()
    finally:
        from django.db import connections

        connections.close_all()
        admin_execute(base_url, f'DROP DATABASE IF EXISTS "{args.db_name}"')
    print(json.dumps({
        "benchmark": "import_speed", "database": "postgresql", "machine": f"{os.cpu_count()} CPU, {platform.machine()}",
        **figures,
    }))


if __name__ == "__main__":
    main()
