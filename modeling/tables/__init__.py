"""Table 3 of the GRAG paper from stored metrics, its exports, and the ablation plots (Figures 3, 4).

Table 3 layout: one row per chosen system (the paper's methods ICL(Hist) ... PostGRAG, or any
runs), the columns of ``COLUMNS``, the best value of each column in bold (BPC: the lowest), the
baseline marked ^B and challengers ^C, and one "imprv (%)" row per challenger over the baseline.

The package, by seam (callers import from ``modeling.tables``, which re-exports every public name):

- ``build``: the table's types, ``table_build`` (best values, imprv rows), ``table_from_values``, printed values;
- ``queries``: the database reads, ``result_table``, ``systems_table``, ``ablation_series``;
- ``render``: CSV / JSON / LaTeX / HTML exports (``table_export``) and ``ablation_plot`` (SVG / PNG).
"""
from .build import (
    ABLATION_PARAMS,
    COLUMNS,
    DECIMALS,
    HEADERS,
    IMPRV_DECIMALS,
    PARAM_SYMBOLS,
    UNITS,
    AblationSeries,
    ImprovementRow,
    ResultTable,
    TableError,
    TableRow,
    fmt_value,
    header,
    improvement,
    table_build,
    table_from_values,
    unit,
)
from .queries import ablation_series, result_table, systems_table
from .render import (
    CONTENT_TYPES,
    FORMATS,
    ablation_plot,
    table_csv,
    table_dict,
    table_export,
    table_html,
    table_json,
    table_tex,
)

__all__ = [
    "ABLATION_PARAMS", "COLUMNS", "CONTENT_TYPES", "DECIMALS", "FORMATS", "HEADERS", "IMPRV_DECIMALS",
    "PARAM_SYMBOLS", "UNITS", "AblationSeries", "ImprovementRow", "ResultTable", "TableError", "TableRow",
    "ablation_plot", "ablation_series", "fmt_value", "header", "improvement", "result_table", "systems_table",
    "table_build", "table_csv", "table_dict", "table_export", "table_from_values", "table_html", "table_json",
    "table_tex", "unit",
]
