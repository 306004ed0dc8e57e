"""Pre-flight check of a pipeline plan: every stage's inputs are written by an earlier stage or stored.

A pipeline runs for minutes to hours; a stage that needs data no earlier stage produces (R_G of the
validation samples PostGRAG trains with, a system nobody trains, a study slug already taken)
would otherwise fail only when its turn comes. ``pipeline_check`` walks the plan's stages in order
against the database, before any job is created, and raises PlanError naming each gap.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from annotation.models import Study
from modeling.grag.config import GRAGConfig
from modeling.grag_services import dataset_valid_split
from modeling.models import Dataset, Response, Sample, System

from .models import Job

if TYPE_CHECKING:
    from .pipeline import PipelinePlan


class PlanError(ValueError):
    """A pipeline plan that cannot run; the message lists what is missing and how to fix it."""


def _missing_generic(dataset: Dataset, split: str, limit: int | None, covered: int | None) -> int:
    """How many of the split's first ``limit`` samples (by primary key, as augmentation and training
    take them) have no stored R_G beyond the first ``covered`` (None = all) an earlier stage writes."""
    if covered is None or (limit is not None and covered >= limit):
        return 0
    qs = Sample.objects.filter(dataset=dataset, split=split).order_by("pk").values_list("generic_response", flat=True)
    rows = list(qs[:limit] if limit else qs)
    return sum(1 for text in rows[covered:] if not text.strip())


def pipeline_check(plan: PipelinePlan) -> PipelinePlan:
    """The plan with its validation split fixed (``valid_split`` None -> the dataset's, or "").

    Raises PlanError when the dataset or a split is missing, or when a stage would need data that
    neither an earlier stage nor the database provides: R_G for a method that reads it (training,
    validation and evaluation samples, paper Sec. 3: PostGRAG's generic response), a trained system
    for generation, responses for metrics and the study, a study for the judge; or when the study slug
    given is taken. Nothing is written.
    """
    dataset = Dataset.objects.filter(name=plan.dataset).first()
    if dataset is None:
        raise PlanError(f"The pipeline cannot run: there is no dataset {plan.dataset!r}; import it first.")
    if plan.valid_split is None:
        plan = replace(plan, valid_split=dataset_valid_split(dataset=dataset, train_split=plan.train_split))
    problems: list[str] = []
    for split in dict.fromkeys(s for s in (plan.train_split, plan.valid_split, plan.eval_split) if s):
        if not Sample.objects.filter(dataset=dataset, split=split).exists():
            problems.append(f"dataset {dataset.name!r} has no samples in split {split!r}")
    augmented: dict[str, int | None] = {}  # split -> first samples an earlier stage writes R_G for
    trained: set[str] = set()
    generated: set[str] = set()
    studied = False
    for number, (kind, params) in enumerate(plan.stages(), start=1):
        where = f"stage {number} ({Job.Kind(kind).label}"
        if kind == Job.Kind.AUGMENT:
            augmented[params["split"]] = params["limit"]
        elif kind == Job.Kind.TRAIN:
            if GRAGConfig.from_dict({"method": params["method"]}).uses_generic:
                needs = [(params["split"], params["limit"])]
                if plan.valid_split:
                    needs.append((plan.valid_split, plan.valid_limit))
                for split, limit in needs:
                    missing = _missing_generic(dataset, split, limit, augmented.get(split, 0))
                    if missing:
                        problems.append(
                            f"{where} {params['method']}) needs the generic response R_G of the first "
                            f"{limit or 'all'} samples of {dataset.name}/{split}, but {missing} have none and "
                            "no earlier stage writes them: turn augmentation on or augment that split first")
            trained.add(params["system_name"])
        elif kind == Job.Kind.GENERATE:
            name = params["system"]
            system = System.objects.filter(name=name).first()
            if name not in trained and not (system and system.checkpoint_dir):
                problems.append(f"{where} {name}) needs a trained system {name!r}; no earlier stage trains it")
            method = system.method if system else next(m for m in plan.methods if plan.system_name(m) == name)
            if GRAGConfig.from_dict({"method": method}).uses_generic:
                missing = _missing_generic(dataset, params["split"], params["limit"], augmented.get(params["split"], 0))
                if missing:
                    problems.append(
                        f"{where} {name}) needs the generic response R_G of the first {params['limit'] or 'all'} "
                        f"samples of {dataset.name}/{params['split']}, but {missing} have none and no earlier "
                        "stage writes them")
            generated.add(name)
        elif kind in (Job.Kind.METRICS, Job.Kind.STUDY):
            names = [params["system"]] if kind == Job.Kind.METRICS else [params["baseline"], params["challenger"]]
            for name in names:
                if name not in generated and not Response.objects.filter(system__name=name).exists():
                    problems.append(f"{where}) needs responses of {name!r}; no earlier stage generates them")
            if kind == Job.Kind.STUDY:
                if plan.study_slug and Study.objects.filter(slug=plan.study_slug).exists():
                    problems.append(f"{where}) would create study {plan.study_slug!r}, which already exists: "
                                    "choose another slug or leave it empty for a new neutral one")
                studied = True
        elif kind == Job.Kind.JUDGE and not studied and not Study.objects.filter(slug=params["study"]).exists():
            problems.append(f"{where}) needs study {params['study']!r}; no earlier stage creates it")
    if problems:
        raise PlanError("The pipeline cannot run: " + "; ".join(problems) + ". No job was created.")
    return plan
