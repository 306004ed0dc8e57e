"""Table 3 of the GRAG paper from stored metrics, its exports, and the ablation plots (Figures 3, 4).

Table 3 layout: one row per chosen system (the paper's methods ICL(Hist) ... PostGRAG, or any
runs), the columns of ``COLUMNS``, the best value of each column in bold (BPC: the lowest), the
baseline marked ^B and challengers ^C, and one "imprv (%)" row per challenger over the baseline.
The paper computes improvement so that positive is better (Table 3: PostGRAG's BPC 0.403 over
PreSFT(Hist)'s 0.384 on SPC is -4.95), so for BPC it is (baseline - challenger) / baseline.
"""
from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from common.csv_safe import csv_writer
from common.latex import tex_escape

from .grag.config import methods_with
from .metrics import LOWER_IS_BETTER, METRICS

# (stored metric name, column header as in Table 3)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("char_f1", "Char-F1"), ("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L"),
    ("bleu", "BLEU"), ("bpc", "BPC"), ("bert_p", "BERT-P"), ("bert_r", "BERT-R"), ("bert_f1", "BERT-F1"),
)
HEADERS = dict(COLUMNS)
DECIMALS = 3  # Table 3 prints three decimals; improvements two
IMPRV_DECIMALS = 2
FORMATS = ("csv", "json", "tex", "html")
ABLATION_PARAMS = ("alpha", "beta", "lr")
PARAM_SYMBOLS = {"alpha": "α", "beta": "β", "lr": "learning rate"}  # the paper's names for the swept weights

assert tuple(name for name, _ in COLUMNS) == METRICS


class TableError(ValueError):
    """The table cannot be built as asked; the message says what to change."""


@dataclass
class TableRow:
    label: str  # the method as the paper names it, or the system name when methods repeat
    system: str
    role: str  # "baseline", "challenger" or ""
    dataset: str
    values: dict[str, float | None]
    best: set[str] = field(default_factory=set)  # columns where this row is (one of) the best

    @property
    def marker(self) -> str:
        return {"baseline": "B", "challenger": "C"}.get(self.role, "")

    @property
    def cells(self) -> list[tuple[str, bool]]:
        """(printed value, is best) per column, for templates."""
        return [(fmt_value(self.values.get(m)), m in self.best) for m in METRICS]


@dataclass
class ImprovementRow:
    challenger: str  # the challenger row's label
    system: str
    values: dict[str, float | None]  # percent; positive = better than the baseline

    @property
    def cells(self) -> list[str]:
        return [fmt_value(self.values.get(m), IMPRV_DECIMALS) for m in METRICS]


@dataclass
class ResultTable:
    split: str
    rows: list[TableRow]
    improvements: list[ImprovementRow]
    baseline: str | None
    meta: dict = field(default_factory=dict)  # BLEU signatures and BERTScore models per system

    @property
    def task(self) -> str:
        return ", ".join(dict.fromkeys(r.dataset for r in self.rows if r.dataset))

    @property
    def several_tasks(self) -> bool:
        return len({r.dataset for r in self.rows}) > 1

    @property
    def columns(self) -> list[tuple[str, str]]:
        return list(COLUMNS)


def improvement(metric: str, baseline: float | None, challenger: float | None) -> float | None:
    """Percent improvement of challenger over baseline, positive = better (BPC: lower is better)."""
    if baseline is None or challenger is None or baseline == 0:
        return None
    if metric in LOWER_IS_BETTER:
        return (baseline - challenger) / abs(baseline) * 100
    return (challenger - baseline) / abs(baseline) * 100


def table_build(
    *, rows: Sequence[TableRow], baseline: str | None, challengers: Sequence[str], split: str = "test",
    meta: dict | None = None,
) -> ResultTable:
    """Mark the best value per column and task and add the imprv rows; ``baseline``/``challengers`` are system names.

    Best is decided on the printed (rounded) values, so two rows that print the same are both bold.
    """
    by_system = {r.system: r for r in rows}
    if baseline is not None and baseline not in by_system:
        raise TableError(f"The baseline {baseline!r} is not one of the table's systems ({', '.join(by_system)}).")
    missing = [c for c in challengers if c not in by_system]
    if missing:
        raise TableError(f"Challengers {', '.join(missing)} are not among the table's systems ({', '.join(by_system)}).")
    if baseline is not None and baseline in challengers:
        raise TableError(f"{baseline!r} cannot be both the baseline and a challenger.")
    for r in rows:
        r.role = "baseline" if r.system == baseline else ("challenger" if r.system in challengers else "")
        r.best = set()
    # Bold is per task (dataset), as in Table 3: "the best performance ... for each task".
    tasks: dict[str, list[TableRow]] = {}
    for r in rows:
        tasks.setdefault(r.dataset, []).append(r)
    for task_rows in tasks.values():
        for metric in METRICS:
            shown = {r.system: round(r.values[metric], DECIMALS) for r in task_rows if r.values.get(metric) is not None}
            if not shown:
                continue
            best = min(shown.values()) if metric in LOWER_IS_BETTER else max(shown.values())
            for r in task_rows:
                if shown.get(r.system) == best:
                    r.best.add(metric)
    improvements = []
    if baseline is not None:
        base = by_system[baseline]
        for name in challengers:
            ch = by_system[name]
            improvements.append(ImprovementRow(
                challenger=ch.label, system=name,
                values={m: improvement(m, base.values.get(m), ch.values.get(m)) for m in METRICS},
            ))
    return ResultTable(split=split, rows=list(rows), improvements=improvements, baseline=baseline, meta=meta or {})


def table_from_values(
    values: dict[str, dict[str, float | None]], *, baseline: str | None = None, challengers: Sequence[str] = (),
    task: str = "", split: str = "test",
) -> ResultTable:
    """Table 3 from plain figures, {row label: {metric: value}}, without the database (scripts, benchmarks)."""
    rows = [TableRow(label=label, system=label, role="", dataset=task, values=dict(v)) for label, v in values.items()]
    return table_build(rows=rows, baseline=baseline, challengers=challengers, split=split)


def result_table(*, systems: Sequence, baseline=None, challengers: Iterable = (), split: str = "test") -> ResultTable:
    """Table 3 for stored System rows: their run-level MetricResults on ``split`` (one query)."""
    from .models import MetricResult

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


# --- exports ---------------------------------------------------------------------------------

def fmt_value(value: float | None, decimals: int = DECIMALS) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{decimals}f}"


def header(metric: str) -> str:
    return HEADERS[metric] + (" (lower is better)" if metric in LOWER_IS_BETTER else "")


# Each metric's scale, shown under its header: BLEU is sacrebleu's 0-100 (Table 3's scale), BPC is
# bits per character where lower is better, the rest are 0-1 (modeling/metrics.py).
UNITS = {"bleu": "0–100", "bpc": "bits/char, lower is better"}


def unit(metric: str) -> str:
    return UNITS.get(metric, "0–1")


def systems_table(*, systems: Sequence, split: str = "test") -> ResultTable:
    """Every given system as its own row (no seed averaging), with its run-level metrics on ``split``
    and the best per task marked; systems without metrics are kept with empty cells. The /results/
    page and its CSV / JSON downloads (``table_export``) read this one table.
    """
    from .models import MetricResult

    systems = list(systems)
    values: dict[int, dict[str, float | None]] = {s.pk: dict.fromkeys(METRICS) for s in systems}
    for sys_id, name, value in MetricResult.objects.filter(
        system_id__in=values, split=split, sample__isnull=True, name__in=METRICS
    ).values_list("system_id", "name", "value"):
        values[sys_id][name] = value
    rows = [TableRow(label=s.get_method_display(), system=s.name, role="",
                     dataset=s.dataset.name if s.dataset_id else "", values=values[s.pk]) for s in systems]
    return table_build(rows=rows, baseline=None, challengers=(), split=split)


def table_csv(table: ResultTable) -> str:
    """One line per row and per imprv row; values unrounded so a reader can recompute."""
    out = io.StringIO()
    writer = csv_writer(out)  # system names may begin with = + - @ (formula injection)
    writer.writerow(["task", "method", "system", "role", *[HEADERS[m] for m in METRICS], "best"])
    for r in table.rows:
        writer.writerow([r.dataset, r.label, r.system, r.role,
                         *["" if r.values.get(m) is None else repr(r.values[m]) for m in METRICS],
                         " ".join(HEADERS[m] for m in METRICS if m in r.best)])
    for imp in table.improvements:
        writer.writerow(["", f"imprv (%) {imp.challenger}", imp.system, "imprv",
                         *["" if imp.values.get(m) is None else f"{imp.values[m]:.4f}" for m in METRICS], ""])
    return out.getvalue()


def table_dict(table: ResultTable) -> dict:
    return {
        "split": table.split,
        "task": table.task,
        "baseline": table.baseline,
        "columns": [{"metric": m, "header": HEADERS[m], "lower_is_better": m in LOWER_IS_BETTER} for m in METRICS],
        "rows": [{"label": r.label, "system": r.system, "role": r.role, "dataset": r.dataset,
                  "values": {m: r.values.get(m) for m in METRICS}, "best": [m for m in METRICS if m in r.best]} for r in table.rows],
        "improvements": [{"challenger": i.challenger, "system": i.system, "values": i.values}
                         for i in table.improvements],
        "meta": table.meta,
    }


def table_json(table: ResultTable) -> str:
    return json.dumps(table_dict(table), indent=2)


def table_tex(table: ResultTable) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}), best values in \\textbf, as in Table 3."""
    cols = [HEADERS[m] + (r" $\downarrow$" if m in LOWER_IS_BETTER else "") for m in METRICS]
    several = table.several_tasks
    lines = [
        r"\begin{tabular}{" + ("ll" if several else "l") + "r" * len(METRICS) + "}",
        r"\toprule",
        ("Task & " if several else "") + "Method & " + " & ".join(cols) + r" \\",
        r"\midrule",
    ]
    for r in table.rows:
        label = tex_escape(r.label) + (f"$^{{{r.marker}}}$" if r.marker else "")
        if several:
            label = tex_escape(r.dataset) + " & " + label
        cells = [fmt_value(r.values.get(m)) for m in METRICS]
        cells = [rf"\textbf{{{c}}}" if m in r.best else c for m, c in zip(METRICS, cells)]
        lines.append(label + " & " + " & ".join(cells) + r" \\")
    if table.improvements:
        lines.append(r"\midrule")
        for imp in table.improvements:
            cells = [fmt_value(imp.values.get(m), IMPRV_DECIMALS) for m in METRICS]
            lines.append(("& " if several else "") + rf"imprv (\%) {tex_escape(imp.challenger)} & "
                         + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    caption = f"% split: {table.split}; task: {table.task or '-'}; BLEU: sacrebleu "
    sigs = sorted(set(table.meta.get("bleu_signature", {}).values()))
    return caption + (" / ".join(sigs) or "(no signature)") + "\n" + "\n".join(lines) + "\n"


def table_html(table: ResultTable, *, standalone: bool = True) -> str:
    """The HTML table (modeling/_table3.html); a whole document unless ``standalone`` is False."""
    from django.template.loader import render_to_string

    fragment = render_to_string("modeling/_table3.html", {"table": table})
    if not standalone:
        return fragment
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Table 3</title>"
            "<style>table{border-collapse:collapse}th,td{padding:.25rem .6rem;text-align:right}"
            "th:first-child,td:first-child{text-align:left}thead{border-bottom:2px solid #000}"
            "tr.imprv td{font-style:italic}</style></head><body>\n" + fragment + "\n</body></html>\n")


def table_export(table: ResultTable, fmt: str) -> str:
    if fmt == "csv":
        return table_csv(table)
    if fmt == "json":
        return table_json(table)
    if fmt == "tex":
        return table_tex(table)
    if fmt == "html":
        return table_html(table)
    raise TableError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")


CONTENT_TYPES = {"csv": "text/csv", "json": "application/json", "tex": "application/x-tex", "html": "text/html",
                 "svg": "image/svg+xml", "png": "image/png"}


# --- ablation plots (Figures 3 and 4) --------------------------------------------------------

@dataclass
class AblationSeries:
    """One line of an ablation plot: a dataset's metric against a swept hyper-parameter."""

    dataset: str
    points: list[tuple[float, float]]  # (parameter value, metric), sorted by the parameter
    runs: list[int]  # how many runs each point comes from (the best of them is plotted)

    @property
    def rows(self) -> list[tuple[float, float, int]]:
        return [(x, y, n) for (x, y), n in zip(self.points, self.runs)]


def ablation_series(*, systems: Iterable, param: str, metric: str, split: str = "test") -> list[AblationSeries]:
    """Group runs by dataset and by ``System.config[param]``; each point is the best run's figure.

    Several runs may share a dataset and a value of ``param`` (a sweep over the learning rate as
    well): the point is the best of them (lowest BPC), as the paper reports the tuned figure.
    """
    from .models import MetricResult

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


def ablation_plot(series: Sequence[AblationSeries], *, param: str, metric: str, fmt: str = "svg",
                  title: str = "") -> bytes:
    """Draw ``metric`` against ``param``, one line per dataset, as SVG or PNG bytes (matplotlib, Agg).

    The swept values are uneven (beta in {0, 1e-3, 5e-3, ..., 10}), so, as in the paper's
    Figures 3 and 4, they sit at equal steps on the x axis with their values as tick labels.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if fmt not in ("svg", "png"):
        raise TableError(f"Unknown plot format {fmt!r}; choose svg or png.")
    xs = sorted({x for s in series for x, _ in s.points})
    position = {x: i for i, x in enumerate(xs)}
    fig = Figure(figsize=(5, 3.4), dpi=150)
    ax = fig.add_subplot()
    for s in series:
        ax.plot([position[x] for x, _ in s.points], [y for _, y in s.points], marker="o", label=s.dataset)
    symbol = PARAM_SYMBOLS.get(param, param)
    ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
    ax.set_xlabel(symbol)
    ax.set_ylabel(header(metric))
    ax.set_title(title or f"{HEADERS[metric]} w.r.t. {symbol}")
    ax.grid(alpha=0.3)
    ax.legend(title="dataset")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return buf.getvalue()
