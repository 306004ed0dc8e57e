"""A job's parameters and results as labelled rows, and links to everything it made.

Job pages render these rows instead of the raw JSON: labels, units and value kinds come from
worker/labels.py; file paths show their name, never the server's full path; objects a job made
(dataset, systems, study, its report, a results table) are linked when they exist.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import PurePath
from urllib.parse import urlencode

from django.urls import reverse
from django.utils import timezone

from annotation.models import Study
from modeling.models import System
from modeling.tables import HEADERS

from .labels import term
from .models import Job
from .pipeline import PipelinePlan


@dataclass
class Row:
    """One labelled value: ``value`` is display text; ``url`` links it; ``items`` are (text, url) for lists."""

    label: str
    value: str = ""
    unit: str = ""
    url: str = ""
    items: list[tuple[str, str]] = field(default_factory=list)


def duration_text(seconds: float | None) -> str:
    """'2 h 03 min', '4 min 05 s', '12 s' or '0.4 s'; '' for None."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"


def job_duration(job: Job) -> timedelta | None:
    """Time from start to finish, or to now while it runs; None before it starts."""
    if job.started_at is None:
        return None
    return (job.finished_at or timezone.now()) - job.started_at


def _number(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ") if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}"
    return str(value)


def _path_name(value) -> str:
    """A path's last part, or its last two when the last is a generic folder name (best, last)."""
    parts = PurePath(str(value)).parts
    if not parts:
        return ""
    if len(parts) >= 2 and parts[-1] in {"best", "last", "checkpoint", "model"}:
        return f"{parts[-2]}/{parts[-1]}"
    return parts[-1]


class JobLinks:
    """Resolves names to pages in as few queries as possible (and only objects that exist)."""

    def __init__(self):
        self._systems: dict[str, int] = {}
        self._studies: set[str] = set()

    def prefetch(self, jobs: list[Job]) -> None:
        names, slugs = set(), set()
        for job in jobs:
            for blob in (job.params, job.result):
                if not isinstance(blob, dict):
                    continue
                for key, value in blob.items():
                    show = term(key, job.kind).show
                    if show == "system" and value:
                        names.add(str(value))
                    elif show == "systems" and isinstance(value, list):
                        names.update(str(v) for v in value)
                    elif show == "study" and value:
                        slugs.add(str(value))
            if job.kind == Job.Kind.TRAIN and isinstance(job.result, dict) and job.result.get("system"):
                names.add(job.result["system"])
        if names:
            self._systems.update(System.objects.filter(name__in=names).values_list("name", "pk"))
        if slugs:
            self._studies.update(Study.objects.filter(slug__in=slugs).values_list("slug", flat=True))

    def system(self, name) -> str:
        pk = self._systems.get(str(name))
        return reverse("modeling:system_detail", args=[pk]) if pk else ""

    def study(self, slug) -> str:
        return reverse("annotation:study_manage", args=[slug]) if str(slug) in self._studies else ""

    def report(self, slug) -> str:
        return reverse("reports:study_report", args=[slug]) if str(slug) in self._studies else ""

    @staticmethod
    def dataset(name) -> str:
        return f"{reverse('modeling:system_list')}?{urlencode({'dataset': name})}"


def _row(key: str, value, kind: str, links: JobLinks) -> Row | None:
    t = term(key, kind)
    if t.show == "hidden" or value in (None, "", [], {}):
        return None
    row = Row(label=t.label, unit=t.unit)
    if t.show == "path":
        row.value = _path_name(value)
    elif t.show == "seconds":
        row.value = duration_text(float(value))
    elif t.show == "bool":
        row.value = "yes" if value else "no"
    elif t.show == "dataset":
        row.value, row.url = str(value), links.dataset(value)
    elif t.show == "system":
        row.value, row.url = str(value), links.system(value)
    elif t.show == "study":
        row.value, row.url = str(value), links.study(value)
    elif t.show == "systems" and isinstance(value, list):
        row.items = [(str(v), links.system(v)) for v in value]
    elif t.show == "reliability" and isinstance(value, dict):  # a judge run's verdict and its reasons
        row.value = str(value.get("verdict") or "not assessed")
        row.items = [(str(reason), "") for reason in value.get("reasons") or []]
    elif t.show in ("method", "methods"):
        names = dict(System.Method.choices)
        values = value if isinstance(value, list) else [value]
        row.value = ", ".join(names.get(v, str(v)) for v in values)
    elif isinstance(value, dict):
        row.items = [(f"{HEADERS.get(k, k)}: {_number(v) if isinstance(v, int | float) else v}", "")
                     for k, v in value.items()]
    elif isinstance(value, list):
        row.value = ", ".join(_number(v) for v in value)
    else:
        row.value = _number(value)
    return row


def _rows(blob: dict, kind: str, links: JobLinks) -> list[Row]:
    if not isinstance(blob, dict):
        return [Row(label="Value", value=str(blob))]
    return [row for key, value in blob.items() if (row := _row(key, value, kind, links)) is not None]


def param_rows(job: Job, links: JobLinks | None = None) -> list[Row]:
    """The job's parameters, labelled (pipeline: the plan)."""
    if links is None:
        links = JobLinks()
        links.prefetch([job])
    return _rows(job.params, job.kind, links)


def result_rows(job: Job, links: JobLinks | None = None) -> list[Row]:
    """The job's result, labelled; a pipeline's is its stages' (shown per stage instead)."""
    if job.kind == Job.Kind.PIPELINE:
        return []
    if links is None:
        links = JobLinks()
        links.prefetch([job])
    return _rows(job.result, job.kind, links)


def made_links(job: Job, children: list[Job] = (), links: JobLinks | None = None) -> list[tuple[str, str]]:
    """(label, url) of every object this job (or, for a pipeline, its stages) made or scored."""
    if links is None:
        links = JobLinks()
        links.prefetch([job, *children])
    out: dict[str, str] = {}
    systems: list[str] = []
    for j in [job, *children]:
        p, r = j.params or {}, j.result if isinstance(j.result, dict) else {}
        if j.kind == Job.Kind.IMPORT and r.get("dataset"):
            out[f"Dataset {r['dataset']}"] = links.dataset(r["dataset"])
        elif j.kind == Job.Kind.TRAIN and (name := r.get("system") or p.get("system_name")):
            systems.append(name)
        elif j.kind == Job.Kind.ICL:
            systems += r.get("systems", [])
        elif j.kind in (Job.Kind.GENERATE, Job.Kind.METRICS) and p.get("system"):
            systems.append(p["system"])
        elif j.kind == Job.Kind.STUDY and (slug := r.get("study") or p.get("slug")):
            out[f"Study {slug}"] = links.study(slug)
            out[f"Report of {slug}"] = links.report(slug)
        elif j.kind == Job.Kind.JUDGE and (slug := p.get("study")):
            out[f"Report of {slug} (with the judge)"] = links.report(slug)
    for name in dict.fromkeys(systems):
        out[f"System {name}"] = links.system(name)
    scored = list(dict.fromkeys(
        j.params["system"] for j in [job, *children]
        if j.kind == Job.Kind.METRICS and j.status == Job.Status.SUCCEEDED and j.params.get("system")))
    if scored:
        query = [("systems", s) for s in scored] + [("split", (job.params or {}).get("eval_split")
                                                      or (job.params or {}).get("split") or "test")]
        plan = job.params if job.kind == Job.Kind.PIPELINE else {}
        if plan.get("baseline") and plan.get("challenger") and len(scored) > 1:
            try:
                names = PipelinePlan(**plan)
            except TypeError:  # a plan stored by an older version: no baseline row then
                names = None
            if names is not None:
                query += [("baseline", names.system_name(plan["baseline"])),
                          ("challengers", names.system_name(plan["challenger"]))]
        out["Results table"] = f"{reverse('modeling:table_builder')}?{urlencode(query)}"
    seen: set[str] = set()  # one link per page (a judge stage's report is the study's report)
    return [(label, url) for label, url in out.items() if url and not (url in seen or seen.add(url))]


def stage_neighbours(job: Job) -> tuple[Job | None, Job | None, int, int]:
    """For a pipeline stage: the previous and next stage, its 1-based position and the stage count."""
    if job.parent_id is None:
        return None, None, 0, 0
    siblings = list(Job.objects.filter(parent_id=job.parent_id).order_by("pk"))
    i = next(n for n, s in enumerate(siblings) if s.pk == job.pk)
    return (siblings[i - 1] if i > 0 else None, siblings[i + 1] if i + 1 < len(siblings) else None,
            i + 1, len(siblings))


def stage_subject(job: Job) -> str:
    """What a pipeline stage works on, for the stage list: its system, study or dataset split."""
    p = job.params or {}
    if p.get("range") and job.parent_id:  # a shard of a job spread over workers
        unit = "items" if job.kind == Job.Kind.JUDGE else "samples"
        return f"{unit} {p['range'][0] + 1}–{p['range'][1]} on {job.worker_host or 'no worker yet'}"
    if p.get("system") or p.get("system_name"):
        return p.get("system") or p["system_name"]
    if job.kind == Job.Kind.STUDY:
        return p.get("slug", "")
    if job.kind == Job.Kind.JUDGE:
        return p.get("study", "")
    if p.get("dataset") and p.get("split"):
        return f"{p['dataset']} / {p['split']}"
    return ""
