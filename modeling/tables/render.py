"""Table 3 as CSV, JSON, LaTeX (booktabs) or HTML, and the ablation plots (Figures 3, 4) as SVG or PNG."""
from __future__ import annotations

import io
import json
from collections.abc import Sequence

from common.csv_safe import csv_writer
from common.latex import tex_escape

from ..metrics import LOWER_IS_BETTER, METRICS
from .build import (
    HEADERS,
    IMPRV_DECIMALS,
    PARAM_SYMBOLS,
    AblationSeries,
    ResultTable,
    TableError,
    fmt_value,
    header,
)

FORMATS = ("csv", "json", "tex", "html")
CONTENT_TYPES = {"csv": "text/csv", "json": "application/json", "tex": "application/x-tex", "html": "text/html",
                 "svg": "image/svg+xml", "png": "image/png"}


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
