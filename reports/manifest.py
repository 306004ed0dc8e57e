"""The manifest every export carries, so that a published number can be traced back to its inputs."""
from __future__ import annotations

import hashlib
from functools import cache
from importlib import metadata

import pandas as pd
from django.utils import timezone

from annotation.models import Item, Rating, Study
from judge.models import JudgeRun

PACKAGES = ("numpy", "pandas", "scipy", "statsmodels", "krippendorff", "matplotlib", "scikit-learn", "ppi-python", "choix")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@cache
def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _system(system, name: str) -> dict:
    if system is None:
        return {"name": name, "system_id": None}
    return {
        "name": name,
        "system_id": system.pk,
        "system_name": system.name,
        "method": system.method,
        "dataset": system.dataset.name if system.dataset_id else None,
        "backbone": system.backbone,
        "config": system.config,
        "generation": system.generation,
        "status": system.status,
        "checkpoint_dir": system.checkpoint_dir,
    }


def report_manifest(*, study: Study, ratings: pd.DataFrame, min_confidence: int) -> dict:
    """Study settings, questions, item set, systems, seeds, A/B mapping, judge prompts and the time made."""
    item_keys = sorted(Item.objects.filter(study=study, kind=Item.Kind.NORMAL).values_list("key", flat=True))
    human = ratings[ratings["rater_kind"] == Rating.RaterKind.HUMAN]
    # Side the baseline was shown on, per (item, annotator): seeded and stored at assignment time.
    sides = human[["item_key", "rater", "baseline_side"]].drop_duplicates(["item_key", "rater"])
    side_lines = sorted(sides["item_key"] + "\t" + sides["rater"] + "\t" + sides["baseline_side"])
    judge_runs = list(JudgeRun.objects.filter(study=study).order_by("created_at", "name"))
    systems = {
        "baseline": _system(study.baseline_system, study.baseline_name),
        "challenger": _system(study.challenger_system, study.challenger_name),
    }
    return {
        "generated_at": timezone.now().isoformat(),
        "study": {
            "slug": study.slug,
            "title": study.title,
            "overlap": study.overlap,
            "seed": study.seed,
            "min_confidence_default": study.min_confidence,
            "min_confidence_used": min_confidence,
            "reservation_minutes": study.reservation_minutes,
            "too_fast_seconds": study.too_fast_seconds,
            "trap_rate": study.trap_rate,
            "is_open": study.is_open,
            "created_at": study.created_at.isoformat() if study.created_at else None,
            "meta": study.meta,
        },
        "instructions": {"version": study.instructions_version, "sha256": _sha256(study.instructions)},
        "questions": [{"key": q.key, "label": q.label, "text": q.text} for q in study.questions.all()],
        "items": {"count": len(item_keys), "sha256": _sha256("\n".join(item_keys)), "keys": item_keys},
        "systems": systems,
        "seeds": {
            "study": study.seed,
            "bootstrap": study.seed,
            "baseline": (systems["baseline"].get("config") or {}).get("seed"),
            "challenger": (systems["challenger"].get("config") or {}).get("seed"),
            "judge": {run.name: (run.settings or {}).get("seed") for run in judge_runs},
        },
        "ab_mapping": {
            "scheme": "per (annotator, item), seeded by the study seed and stored with the assignment; "
                      "ratings are stored canonically (baseline / challenger / similar) with the side shown",
            "baseline_side_counts": {side: int((sides["baseline_side"] == side).sum()) for side in ("A", "B")},
            "sha256": _sha256("\n".join(side_lines)),
        },
        "judge_runs": [
            {
                "name": run.name,
                "model_id": run.model_id,
                "prompt_version": run.prompt_version,
                "prompt_sha256": _sha256(run.prompt_text),
                "settings": run.settings,
                "status": run.status,
                "min_option_mass": run.min_option_mass,
                # Stored when the run finished (judge.reliability); {} for a run not finished since.
                "reliability": run.reliability,
                "created_at": run.created_at.isoformat() if run.created_at else None,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            }
            for run in judge_runs
        ],
        "software": {package: _version(package) for package in PACKAGES},
    }


def judge_runs_of(*, study: Study) -> list[JudgeRun]:
    """The study's judge runs, oldest first: the one place the report reads the judge app (moves with it, issue 18)."""
    return list(JudgeRun.objects.filter(study=study).order_by("created_at", "name"))


def judge_models_of(*, study: Study) -> dict[str, str]:
    """Rater name -> model id of the study's judge runs (a judge is identified across studies by its model)."""
    return dict(JudgeRun.objects.filter(study=study).values_list("name", "model_id"))
def judge_runs_reliability(*, manifest: dict) -> dict[str, dict]:
    """Rater name -> {"status", "verdict", "reasons", "checks"} of every judge run of the report's study.

    Read from the manifest's judge runs (stored on each JudgeRun when it finished), so the report
    shows a run's reliability even when all its verdicts abstained and it has no label to plot.
    A run never assessed (finished before reliability existed, or not finished) has verdict "".
    """
    return {
        run["name"]: {"status": run["status"], "verdict": (run.get("reliability") or {}).get("verdict", ""),
                      "reasons": (run.get("reliability") or {}).get("reasons", []),
                      "checks": (run.get("reliability") or {}).get("checks", {})}
        for run in manifest.get("judge_runs", [])
    }
