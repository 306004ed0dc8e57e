"""Celery tasks: thin wrappers that take a job id, re-fetch, call one service, save results."""
import sys

from celery import shared_task

from ..jobs import job_context

__all__ = ["ping", "import_dataset"]


@shared_task(name="worker.ping")
def ping(job_id: int) -> dict:
    """Prove the round trip launcher -> broker -> worker -> database works."""
    from django.db import connection

    with job_context(job_id) as handle:
        torch = sys.modules.get("torch")  # loaded by the worker when LLM_CPU_THREADS is set (common/threads.py)
        handle.job.result = {"pong": True, "database": connection.vendor, "host": handle.job.worker_host,
                             "torch_threads": torch.get_num_threads() if torch else None}
        handle.log("pong")
    return {"job": job_id}


@shared_task(name="worker.import_dataset")
def import_dataset(job_id: int) -> dict:
    """Import a dataset file named in the job's parameters (see worker.forms.ImportForm)."""
    # lazy: at call time: a worker loads a stage's services when it runs that stage's job
    from modeling.importers.service import dataset_import, import_roots

    with job_context(job_id) as handle:
        p = handle.job.params
        report = dataset_import(
            kind=p["kind"], path=p["path"], split=p.get("split"), name=p.get("name"), limit=p.get("limit"),
            progress=handle.progress,  # a cancel rolls the whole import back
            roots=import_roots(),  # launched from the web: only IMPORT_ROOTS (security review, finding 4)
        )
        handle.job.result = report.as_dict()
        handle.log(f"imported {handle.job.result}")
    return {"job": job_id}
