"""Celery tasks for the llm stage (thin wrappers: take a job id, call one service).

The model is loaded on the first job a worker process runs and kept (``backend_for`` caches it),
so later augment, ICL and judge jobs on that worker start at once.
"""
from celery import shared_task

from modeling.text import flag_line

from ..jobs import job_context
from ..models import Job
from ..shards import job_shards, shard_range, shard_ranges, shards_dispatch

__all__ = ["augment", "icl"]


def _sharded(handle, dataset, split: str) -> bool:
    """Spread a whole augment / ICL job over the queue's workers when it gets more than one shard
    (worker/shards.py): shard jobs over disjoint sample ranges, each with the parent's params."""
    params = handle.job.params
    units = dataset.samples.filter(split=split).count()
    if params.get("limit"):
        units = min(units, int(params["limit"]))
    shards = job_shards(handle.job, units) if units else 1
    if shards <= 1:
        return False
    ranges = shard_ranges(units, shards)
    seeds = 1 if not int(params.get("n_shot") or 0) else len(params.get("seeds") or (0, 1, 2, 3, 4))
    shards_dispatch(parent=handle.job, ranges=ranges, params={k: v for k, v in params.items() if k != "shards"},
                    units_per_range_unit=seeds if handle.job.kind == Job.Kind.ICL else 1)
    handle.detached = True
    handle.job.result = {"shards": len(ranges)}
    handle.log(f"{units} samples in {len(ranges)} shards")
    return True


def _shard_done_twice(job_id: int) -> bool:
    """A shard delivered again after it finished (a redelivery): nothing to do."""
    return Job.objects.filter(pk=job_id, status=Job.Status.SUCCEEDED, params__has_key="range").exists()


@shared_task(name="worker.augment")
def augment(job_id: int) -> dict:
    """Generic-response augmentation; params {"dataset", "split", "model", "limit", "batch_size"}. Resumes."""
    # lazy: at call time: a worker loads a stage's services when it runs that stage's job
    from modeling.llm_services import augment_dataset
    from modeling.models import Dataset

    if _shard_done_twice(job_id):
        return {"job": job_id}
    with job_context(job_id) as handle:
        params = handle.job.params
        dataset = Dataset.objects.get(name=params["dataset"])
        if shard_range(handle.job) is None and _sharded(handle, dataset, params.get("split", "train")):
            return {"job": job_id}
        handle.log(f"augment {dataset.name}/{params.get('split', 'train')} with {params.get('model', 'smollm2')}")
        summary = augment_dataset(
            dataset=dataset, split=params.get("split", "train"), model_id=params.get("model") or "smollm2",
            limit=params.get("limit"), batch_size=int(params.get("batch_size") or 8), progress=handle.progress,
            sample_range=shard_range(handle.job),
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

    if _shard_done_twice(job_id):
        return {"job": job_id}
    with job_context(job_id) as handle:
        params = handle.job.params
        dataset = Dataset.objects.get(name=params["dataset"])
        if shard_range(handle.job) is None and _sharded(handle, dataset, params.get("split", "test")):
            return {"job": job_id}
        n_shot = int(params.get("n_shot") or 0)
        handle.log(f"{params['method']} {n_shot}-shot on {dataset.name}/{params.get('split', 'test')}")
        systems = icl_generate(
            dataset=dataset, split=params.get("split", "test"), method=params["method"], n_shot=n_shot,
            seeds=params.get("seeds"), model_id=params.get("model") or "smollm2", limit=params.get("limit"),
            batch_size=int(params.get("batch_size") or 8), shot_split=params.get("shot_split", "train"),
            progress=handle.progress, sample_range=shard_range(handle.job),
        )
        if shard_range(handle.job) is not None:  # the run statistics come once all shards are done
            handle.job.result = {"systems": [s.name for s in systems], "system_ids": [s.pk for s in systems],
                                 "counts": {s.name: s.shard_counts for s in systems}}
            handle.log(f"shard of {', '.join(s.name for s in systems)} done")
            return {"job": job_id}
        handle.job.result = _icl_result(systems)
        handle.log(f"systems: {', '.join(s.name for s in systems)}")
        for s in systems:
            handle.log(f"{s.name}: {flag_line(s.config['run']['degenerate'])}")
    return {"job": job_id}



def _icl_result(systems) -> dict:
    return {"systems": [s.name for s in systems], "system_ids": [s.pk for s in systems],
            "seed_group": systems[0].config["seed_group"],
            "degenerate": {s.name: s.config["run"]["degenerate"] for s in systems}}


def augment_shards_finish(parent: Job, shards: list[Job]) -> dict:
    """All shards of an augmentation job succeeded: their summaries added up (counts and flag counts)."""
    total: dict = {}
    for shard in shards:
        for key, value in shard.result.items():
            if isinstance(value, bool) or key == "seconds":
                continue
            if isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
            elif isinstance(value, dict):
                inner = total.setdefault(key, {})
                for k, v in value.items():
                    inner[k] = inner.get(k, 0) + v
            else:
                total.setdefault(key, value)  # dataset, split, model, prompt version: the same in every shard
    return total


def icl_shards_finish(parent: Job, shards: list[Job]) -> dict:
    """All shards of an ICL job succeeded: each System's run statistics over every target, once."""
    # lazy: at call time: a worker loads a stage's services when it runs that stage's job
    from modeling.llm_services import icl_system_finish, llm_samples
    from modeling.models import Dataset, System

    params = parent.params
    dataset = Dataset.objects.get(name=params["dataset"])
    targets = llm_samples(dataset=dataset, split=params.get("split", "test"), limit=params.get("limit"))
    systems = list(System.objects.filter(pk__in=shards[0].result["system_ids"]).order_by("pk"))
    for system in systems:
        counts: dict = {}
        for shard in shards:
            for key, value in (shard.result.get("counts") or {}).get(system.name, {}).items():
                counts[key] = counts.get(key, 0) + value
        icl_system_finish(system=system, targets=targets, counts=counts)
    return _icl_result(systems)
