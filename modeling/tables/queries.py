"""Table 3, the systems table and the ablation series from stored MetricResult rows (the database reads)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..grag.config import methods_with
from ..metrics import LOWER_IS_BETTER, METRICS
from ..models import MetricResult
from .build import AblationSeries, ResultTable, TableError, TableRow, table_build


def result_table(*, systems: Sequence, baseline=None, challengers: Iterable = (), split: str = "test") -> ResultTable:
    """Table 3 for stored System rows: their run-level MetricResults on ``split`` (one query)."""
    systems = list(systems)
    if not systems:
        raise TableError("Choose at least one system for the table.")
    challengers = list(challengers)
    values: dict[int, dict[str, float | None]] = {s.pk: dict.fromkeys(METRICS) for s in systems}
    meta: dict[str, dict] = {"bleu_signature": {}, "bert": {}}
    names = {s.pk: s.name for s in systems}
    for sys_id, name, value, row_meta in MetricResult.objects.filter(
        system_id__in=values, split=split, sample__isnull=True, name__in=METRICS
    ).values_list("system_id", "name", "value", "meta"):
        values[sys_id][name] = value
        if name == "bleu" and row_meta.get("signature"):
            meta["bleu_signature"][names[sys_id]] = row_meta["signature"]
        if name == "bert_f1" and row_meta.get("model"):
            meta["bert"][names[sys_id]] = {k: row_meta.get(k) for k in ("model", "num_layers")}
    empty = [s.name for s in systems if all(v is None for v in values[s.pk].values())]
    if empty:
        raise TableError(
            f"No metrics on split {split!r} for {', '.join(empty)}: run `manage.py compute_metrics NAME "
            f"--split {split}` (or a metrics job) first."
        )
    # An ICL setting run with several seeds is one row, its metrics averaged over the seeds that
    # have them (section 4.3.1: n > 0 shots are repeated with five seeds and averaged).
    groups: dict[str, list] = {}
    for s in systems:
        groups.setdefault((s.config or {}).get("seed_group") or s.name, []).append(s)
    row_of = {s.name: key for key, members in groups.items() for s in members}
    methods = [(members[0].dataset_id, members[0].method) for members in groups.values()]
    rows = []
    for key, members in groups.items():
        first = members[0]
        averaged = {}
        for m in METRICS:
            seen = [values[s.pk][m] for s in members if values[s.pk][m] is not None]
            averaged[m] = sum(seen) / len(seen) if seen else None
        seeds = f" ({len(members)} seeds)" if len(members) > 1 else ""
        rows.append(TableRow(
            # The paper's method name when it names one row of its task only; else the run's own name.
            label=(first.get_method_display() if methods.count((first.dataset_id, first.method)) == 1 else key) + seeds,
            system=key, role="", dataset=first.dataset.name if first.dataset_id else "", values=averaged,
        ))
    return table_build(
        rows=rows, baseline=row_of[baseline.name] if baseline is not None else None,
        challengers=list(dict.fromkeys(row_of[c.name] for c in challengers)), split=split, meta=meta,
    )


def systems_table(*, systems: Sequence, split: str = "test") -> ResultTable:
    """Every given system as its own row (no seed averaging), with its run-level metrics on ``split``
    and the best per task marked; systems without metrics are kept with empty cells. The /results/
    page and its CSV / JSON downloads (``table_export``) read this one table.
    """
    systems = list(systems)
    values: dict[int, dict[str, float | None]] = {s.pk: dict.fromkeys(METRICS) for s in systems}
    for sys_id, name, value in MetricResult.objects.filter(
        system_id__in=values, split=split, sample__isnull=True, name__in=METRICS
    ).values_list("system_id", "name", "value"):
        values[sys_id][name] = value
    rows = [TableRow(label=s.get_method_display(), system=s.name, role="",
                     dataset=s.dataset.name if s.dataset_id else "", values=values[s.pk]) for s in systems]
    return table_build(rows=rows, baseline=None, challengers=(), split=split)


def ablation_series(*, systems: Iterable, param: str, metric: str, split: str = "test") -> list[AblationSeries]:
    """Group runs by dataset and by ``System.config[param]``; each point is the best run's figure.

    Several runs may share a dataset and a value of ``param`` (a sweep over the learning rate as
    well): the point is the best of them (lowest BPC), as the paper reports the tuned figure.
    """
    if metric not in METRICS:
        raise TableError(f"Unknown metric {metric!r}; choose one of {', '.join(METRICS)}.")
    # Only methods that train with the parameter: a PreSFT(Hist) run stores beta in its config but
    # never reads it, so it is no point of a beta curve (GRAGConfig.effective_alpha / effective_beta).
    using = methods_with(param)
    systems = [s for s in systems if isinstance(s.config, dict) and s.config.get(param) is not None
               and s.method in using]
    if not systems:
        raise TableError(f"No chosen system of a method that uses {param!r} has it in its config: "
                         f"pick runs of a sweep over {param}.")
    values = dict(MetricResult.objects.filter(
        system__in=systems, split=split, sample__isnull=True, name=metric
    ).values_list("system_id", "value"))
    grouped: dict[str, dict[float, list[float]]] = {}
    for s in systems:
        if s.pk not in values:
            continue
        dataset = s.dataset.name if s.dataset_id else "(no dataset)"
        grouped.setdefault(dataset, {}).setdefault(float(s.config[param]), []).append(values[s.pk])
    if not grouped:
        raise TableError(f"None of the chosen runs has a stored {metric} on split {split!r}: compute metrics first.")
    pick = min if metric in LOWER_IS_BETTER else max
    return [
        AblationSeries(
            dataset=name,
            points=[(x, pick(ys)) for x, ys in sorted(by_x.items())],
            runs=[len(ys) for _, ys in sorted(by_x.items())],
        )
        for name, by_x in sorted(grouped.items())
    ]
