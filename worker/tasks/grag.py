"""Celery tasks for the grag stage (thin wrappers: take a job id, call one service).

Both are idempotent: a retried or redelivered train job resumes from the system's checkpoint,
and a generate job skips samples that already have a response.
"""
from celery import shared_task

from modeling.grag.config import LAUNCH_KEYS
from modeling.text import flag_line

from ..jobs import job_context

__all__ = ["train", "generate"]



@shared_task(name="worker.train")
def train(job_id: int) -> dict:
    """Train a system (params: dataset, method, backbone, system_name and GRAGConfig fields)."""
    # lazy: at call time: a worker loads a stage's services when it runs that stage's job
    from modeling.grag_services import RUN_KEYS, system_create, train_system
    from modeling.models import Dataset

    with job_context(job_id) as handle:
        p = handle.job.params
        dataset = Dataset.objects.get(name=p["dataset"])
        # GRAGConfig's launch settings and the run's data go into the System's config.
        config = {k: p[k] for k in (*LAUNCH_KEYS, *RUN_KEYS) if p.get(k) is not None}
        config.update(p.get("config") or {})
        system = system_create(
            name=p.get("system_name") or f"{dataset.name}-{p['method']}", dataset=dataset, method=p["method"],
            backbone=p.get("backbone") or "smollm2", config=config,
        )
        handle.log(f"training {system.name} ({system.method} on {system.backbone})")
        result = train_system(system=system, progress=handle.progress)
        handle.job.result = {k: result[k] for k in ("system", "samples", "valid_samples", "steps", "best_valid_l_p", "resumed", "best_dir")}
        handle.log(f"trained {system.name}: {result['steps']} steps, best valid L_P {result['best_valid_l_p']}")
    return {"job": job_id}


@shared_task(name="worker.generate")
def generate(job_id: int) -> dict:
    """Generate a trained system's responses (params: system, split, limit, decoding)."""
    # lazy: at call time, as in train()
    from modeling.grag_services import system_generate
    from modeling.models import System

    with job_context(job_id) as handle:
        p = handle.job.params
        system = System.objects.get(name=p["system"])
        result = system_generate(
            system=system, split=p.get("split", "test"), limit=p.get("limit"), decoding=p.get("decoding"),
            progress=handle.progress,
        )
        handle.job.result = result
        handle.log(f"{result['created']} new responses of {system.name} on {result['split']} ({result['existing']} existed)")
        handle.log(flag_line(result["degenerate"]))
    return {"job": job_id}
