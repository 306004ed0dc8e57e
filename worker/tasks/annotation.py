"""Celery tasks for the annotation stage (thin wrappers: take a job id, call one service)."""
from celery import shared_task

from ..jobs import job_context

__all__ = ["create_study"]


@shared_task(name="worker.create_study")
def create_study(job_id: int) -> dict:
    """Create a study from two systems' stored responses.

    Job params: baseline and challenger (System ids or names), and optionally slug (default: a
    neutral one fixed by the job id), split, limit, overlap, seed, trap_rate, annotators
    (usernames to give the study). The study stays closed while its checks flag anything.
    """
    # lazy: at call time: a worker loads a stage's services when it runs that stage's job
    from annotation.models import Study
    from annotation.services import annotator_add, study_create_from_systems, study_neutral_slug
    from modeling.models import System

    def system(ref) -> System:
        found = System.objects.filter(pk=ref).first() if str(ref).isdigit() else System.objects.filter(name=ref).first()
        if found is None:
            raise ValueError(f"no system {ref!r}")
        return found

    with job_context(job_id) as handle:
        p = handle.job.params
        slug = p.get("slug") or study_neutral_slug("job", job_id)
        existing = Study.objects.filter(slug=slug).first()
        if existing is not None and existing.meta.get("job") == job_id:
            study = existing  # a retried job: the study was made on the first attempt
        else:
            study = study_create_from_systems(
                slug=slug, baseline=system(p["baseline"]), challenger=system(p["challenger"]),
                split=p.get("split", "test"), limit=p.get("limit"), overlap=int(p.get("overlap", 3)),
                seed=int(p.get("seed", 0)), trap_rate=float(p.get("trap_rate", 0.0)),
            )
            Study.objects.filter(pk=study.pk).update(meta={**study.meta, "job": job_id})
        for username in p.get("annotators", []):
            annotator_add(username=username, password=None, study=study)
        n = study.items.count()
        handle.progress(n, n)
        handle.job.result = {"study": study.slug, "study_id": study.pk, "items": n, "open": study.is_open,
                             "check": study.meta.get("check", {})}
        handle.log(f"study {study.slug}: {n} items" + ("" if study.is_open else
                   f"; closed until staff review its check ({study.meta.get('check')})"))
    return {"job": job_id}
