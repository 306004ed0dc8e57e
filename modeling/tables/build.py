"""Table 3's shape without the database: its rows, the best value per column, the imprv rows, printed values.

Table 3 layout: one row per chosen system (the paper's methods ICL(Hist) ... PostGRAG, or any
runs), the columns of ``COLUMNS``, the best value of each column in bold (BPC: the lowest), the
baseline marked ^B and challengers ^C, and one "imprv (%)" row per challenger over the baseline.
The paper computes improvement so that positive is better (Table 3: PostGRAG's BPC 0.403 over
PreSFT(Hist)'s 0.384 on SPC is -4.95), so for BPC it is (baseline - challenger) / baseline.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..metrics import LOWER_IS_BETTER, METRICS

# (stored metric name, column header as in Table 3)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("char_f1", "Char-F1"), ("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L"),
    ("bleu", "BLEU"), ("bpc", "BPC"), ("bert_p", "BERT-P"), ("bert_r", "BERT-R"), ("bert_f1", "BERT-F1"),
)
HEADERS = dict(COLUMNS)
DECIMALS = 3  # Table 3 prints three decimals; improvements two
IMPRV_DECIMALS = 2
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


# --- printed values --------------------------------------------------------------------------

def fmt_value(value: float | None, decimals: int = DECIMALS) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{decimals}f}"


def header(metric: str) -> str:
    return HEADERS[metric] + (" (lower is better)" if metric in LOWER_IS_BETTER else "")


# Each metric's scale, shown under its header: BLEU is sacrebleu's 0-100 (Table 3's scale), BPC is
# bits per character where lower is better, the rest are 0-1 (modeling/metrics/).
UNITS = {"bleu": "0–100", "bpc": "bits/char, lower is better"}


def unit(metric: str) -> str:
    return UNITS.get(metric, "0–1")


# --- ablation plots (Figures 3 and 4): one line of a plot -------------------------------------

@dataclass
class AblationSeries:
    """One line of an ablation plot: a dataset's metric against a swept hyper-parameter."""

    dataset: str
    points: list[tuple[float, float]]  # (parameter value, metric), sorted by the parameter
    runs: list[int]  # how many runs each point comes from (the best of them is plotted)

    @property
    def rows(self) -> list[tuple[float, float, int]]:
        return [(x, y, n) for (x, y), n in zip(self.points, self.runs)]
