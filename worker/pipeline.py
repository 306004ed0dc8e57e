"""The whole GRAG pipeline as one Celery canvas (issue: launch whole experiments from the browser).

dataset -> augment (R_G) -> train each chosen method -> generate -> metrics -> study of
baseline vs challenger -> judge. Each stage is a child Job, so the admin watches every stage's
progress; the stages run as a chain of immutable signatures, each taking its own job id.
Names are fixed up front (systems "<prefix><method>", a neutral study slug), so a stage finds what the
previous one produced without passing results through the broker. ``pipeline_check`` refuses, before
any job exists, a plan whose stages need data that no earlier stage writes and the database lacks
(e.g. PostGRAG trained on samples with no generic response), so that shows in seconds, not after
ten minutes of earlier stages.
"""
from dataclasses import asdict, dataclass, field, replace

from django.db import transaction
from django.utils.text import slugify

from annotation.services import study_neutral_slug
from modeling.grag.config import DEFAULTS as GRAG_DEFAULTS

from .models import Job
from .pipeline_check import PlanError, pipeline_check
from .registry import task_for_kind
from .services import broker_check

__all__ = ["PipelinePlan", "PlanError", "pipeline_canvas", "pipeline_check", "pipeline_create", "pipeline_launch"]


@dataclass(frozen=True)
class PipelinePlan:
    """What a pipeline run does; every field is a launch-form field."""

    dataset: str
    methods: list[str] = field(default_factory=lambda: ["presft_hist", "postgrag"])
    baseline: str = "presft_hist"
    challenger: str = "postgrag"
    backbone: str = "smollm2"
    llm: str = "smollm2"  # generic-response model (paper: Llama-3.1-8B-Instruct in 4-bit)
    judge_model: str = "smollm2"  # paper: Qwen2.5-32B-Instruct in 4-bit
    bert_model: str = "minilm"  # offline all-MiniLM-L6-v2; BERTScore's own default is roberta-large
    train_split: str = "train"
    eval_split: str = "test"
    train_limit: int | None = 64
    eval_limit: int | None = 12
    # The split and samples training scores L_P on: None = the dataset's validation split, fixed at
    # launch (modeling.grag_services.dataset_valid_split); "" = none.
    valid_split: str | None = None
    valid_limit: int | None = 16
    max_steps: int | None = 8
    batch_size: int = 4
    lr: float = GRAG_DEFAULTS.lr
    alpha: float = GRAG_DEFAULTS.alpha
    beta: float = GRAG_DEFAULTS.beta
    study_slug: str = ""
    overlap: int = 3
    seed: int = 0
    augment: bool = True
    judge: bool = True

    def system_name(self, method: str) -> str:
        return slugify(f"{self.dataset}-{method}")

    def slug(self) -> str:
        """The study's slug: the one given, or a neutral one (annotators see it, so it never names
        a method, system or model); fixed by the plan so the judge stage finds the study."""
        return self.study_slug or study_neutral_slug(
            "pipeline", self.dataset, self.baseline, self.challenger, self.eval_split, self.eval_limit, self.seed
        )

    def generic_needs(self) -> dict[str, int | None]:
        """{split: how many of its first samples (by primary key; None = all)} whose generic
        response R_G a later stage reads: training's and validation's, and the evaluation's."""
        needs: dict[str, int | None] = {}
        for split, limit in ((self.train_split, self.train_limit), (self.valid_split, self.valid_limit),
                             (self.eval_split, self.eval_limit)):
            if split:
                needs[split] = _most(needs.get(split, 0), limit)
        return needs

    def stages(self) -> list[tuple[str, dict]]:
        """(job kind, job params) for each stage, in order. The augmentation stages cover every
        sample whose R_G a later stage reads (``generic_needs``)."""
        stages: list[tuple[str, dict]] = []
        if self.augment:
            for split, limit in self.generic_needs().items():
                stages.append((Job.Kind.AUGMENT, {"dataset": self.dataset, "split": split, "model": self.llm,
                                                  "limit": limit, "batch_size": 8}))
        for method in self.methods:
            stages.append((Job.Kind.TRAIN, {
                "dataset": self.dataset, "method": method, "backbone": self.backbone,
                "system_name": self.system_name(method), "epochs": 1, "max_steps": self.max_steps,
                "batch_size": self.batch_size, "lr": self.lr, "alpha": self.alpha, "beta": self.beta,
                "limit": self.train_limit, "split": self.train_split, "seed": self.seed,
                **({"valid_split": self.valid_split, "valid_limit": self.valid_limit}
                   if self.valid_split is not None else {}),
            }))
            stages.append((Job.Kind.GENERATE, {"system": self.system_name(method), "split": self.eval_split,
                                               "limit": self.eval_limit, "decoding": "greedy"}))
            stages.append((Job.Kind.METRICS, {"system": self.system_name(method), "split": self.eval_split,
                                              "bert_model": self.bert_model}))
        stages.append((Job.Kind.STUDY, {
            "slug": self.slug(), "baseline": self.system_name(self.baseline),
            "challenger": self.system_name(self.challenger), "split": self.eval_split, "limit": self.eval_limit,
            "overlap": self.overlap, "seed": self.seed,
        }))
        if self.judge:
            # The run's name becomes the rater name in reports: one per study.
            stages.append((Job.Kind.JUDGE, {"study": self.slug(), "model": self.judge_model,
                                            "name": f"LLM-{self.slug()}"[:150]}))
        return stages


def _most(a: int | None, b: int | None) -> int | None:
    """The larger of two sample limits, None (all samples) being the largest."""
    return None if a is None or b is None else max(a, b)


def pipeline_create(*, plan: PipelinePlan, user=None) -> tuple[Job, list[Job]]:
    """Check the plan (``pipeline_check``; raises PlanError), then create the pipeline Job and one
    queued child Job per stage, in one transaction. Without a study slug the study gets a neutral one
    of its own pipeline (from the pipeline job's id), so a second run never meets the first's study.
    The parent's params are the plan as run: ``PipelinePlan(**parent.params)`` gives it back."""
    plan = pipeline_check(plan)
    with transaction.atomic():
        parent = Job.objects.create(kind=Job.Kind.PIPELINE, params=asdict(plan), created_by=user)
        if not plan.study_slug:
            plan = replace(plan, study_slug=study_neutral_slug("pipeline", parent.pk, plan.dataset, plan.seed))
        children = [
            Job.objects.create(kind=kind, params=params, parent=parent, created_by=user)
            for kind, params in plan.stages()
        ]
        Job.objects.filter(pk=parent.pk).update(progress_total=len(children), params=asdict(plan))
    parent.refresh_from_db()
    return parent, children


def pipeline_canvas(*, parent: Job, children: list[Job]):
    """The Celery chain: start marker, each stage, finish marker; a failure marks the pipeline failed."""
    from celery import chain
    from celery import current_app as app

    steps = [app.signature("worker.pipeline_start", args=[parent.pk], immutable=True)]
    steps += [app.signature(task_for_kind(child.kind), args=[child.pk], immutable=True) for child in children]
    steps.append(app.signature("worker.pipeline_finish", args=[parent.pk], immutable=True))
    return chain(*steps).on_error(app.signature("worker.pipeline_failed", args=[parent.pk], immutable=True))


def pipeline_launch(*, plan: PipelinePlan, user=None) -> Job:
    """Check the broker, create the pipeline's jobs and send its chain once they are committed."""
    pipeline_check(plan)  # a bad plan says so before the broker is asked anything
    broker_check()
    parent, children = pipeline_create(plan=plan, user=user)
    transaction.on_commit(lambda: pipeline_canvas(parent=parent, children=children).apply_async())
    return parent
