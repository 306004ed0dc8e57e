"""Which Celery task runs each kind of job (by registered name, so the web process need not
import the ML code of every stage)."""
from .models import Job

TASKS = {
    Job.Kind.PING: "worker.ping",
    Job.Kind.IMPORT: "worker.import_dataset",
    Job.Kind.AUGMENT: "worker.augment",
    Job.Kind.ICL: "worker.icl",
    Job.Kind.TRAIN: "worker.train",
    Job.Kind.GENERATE: "worker.generate",
    Job.Kind.METRICS: "worker.metrics",
    Job.Kind.STUDY: "worker.create_study",
    Job.Kind.JUDGE: "worker.judge",
    Job.Kind.PIPELINE: "worker.pipeline",
}


def task_for_kind(kind: str) -> str:
    return TASKS[Job.Kind(kind)]
