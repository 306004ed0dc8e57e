"""Celery tasks for the llm stage (thin wrappers: take a job id, call one service).

The model is loaded on the first job a worker process runs and kept (``backend_for`` caches it),
so later augment, ICL and judge jobs on that worker start at once.
"""
from celery import shared_task

from modeling.text import flag_line

from ..jobs import job_context

__all__ = ["augment", "icl"]


@shared_task(name="worker.augment")
def augment(job_id: int) -> dict:
    """Generic-response augmentation; params {"dataset", "split", "model", "limit", "batch_size"}. Resumes."""
    # lazy: at call time: a worker loads a stage's services when it runs that stage's job
    from modeling.llm_services import augment_dataset
    from modeling.models import Dataset

    with job_context(job_id) as handle:
        params = handle.job.params
        dataset = Dataset.objects.get(name=params["dataset"])
        handle.log(f"augment {dataset.name}/{params.get('split', 'train')} with {params.get('model', 'smollm2')}")
        summary = augment_dataset(
            dataset=dataset, split=params.get("split", "train"), model_id=params.get("model") or "smollm2",
            limit=params.get("limit"), batch_size=int(params.get("batch_size") or 8), progress=handle.progress,
        )
        handle.job.result = summary
        handle.log(f"{summary['samples']} samples: {summary['generated']} generated, {summary['cached']} cached, "
                   f"{summary['already_done']} already done")
        handle.log(flag_line(summary["degenerate"]))
    return {"job": job_id}


@shared_task(name="worker.icl")
def icl(job_id: int) -> dict:
    """An ICL baseline; params {"dataset", "split", "method", "n_shot", "model", "limit", "seeds"}. Resumes."""
    # lazy: at call time, as in augment()
    from modeling.llm_services import icl_generate
    from modeling.models import Dataset

    with job_context(job_id) as handle:
        params = handle.job.params
        dataset = Dataset.objects.get(name=params["dataset"])
        n_shot = int(params.get("n_shot") or 0)
        handle.log(f"{params['method']} {n_shot}-shot on {dataset.name}/{params.get('split', 'test')}")
        systems = icl_generate(
            dataset=dataset, split=params.get("split", "test"), method=params["method"], n_shot=n_shot,
            seeds=params.get("seeds"), model_id=params.get("model") or "smollm2", limit=params.get("limit"),
            batch_size=int(params.get("batch_size") or 8), shot_split=params.get("shot_split", "train"),
            progress=handle.progress,
        )
        handle.job.result = {"systems": [s.name for s in systems], "system_ids": [s.pk for s in systems],
                             "seed_group": systems[0].config["seed_group"],
                             "degenerate": {s.name: s.config["run"]["degenerate"] for s in systems}}
        handle.log(f"systems: {', '.join(s.name for s in systems)}")
        for s in systems:
            handle.log(f"{s.name}: {flag_line(s.config['run']['degenerate'])}")
    return {"job": job_id}

