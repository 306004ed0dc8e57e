"""Renderers of the agreement report: json, csv, html, tex, and Figure 2 as svg or png.

Each takes the dict from ``report_build`` and carries its manifest, so that any exported
number can be traced back to the study, items, systems, seeds and judge prompts behind it.
"""
from __future__ import annotations

import io
import json

from django.template.loader import render_to_string

from common.csv_safe import csv_writer
from common.latex import tex_escape

from .figures import figure2_png, figure2_series, figure2_svg

FORMATS = ("json", "csv", "html", "tex", "svg", "png")
CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "tex": "application/x-tex; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
}
EXTENSIONS = {"json": "json", "csv": "csv", "html": "html", "tex": "tex", "svg": "svg", "png": "png"}

# Question-level numbers, in the order the csv and tex tables show them.
QUESTION_METRICS = (
    "items", "valid", "dropped_confidence", "dropped_no_majority", "fleiss_kappa", "fleiss_items",
    "krippendorff_alpha", "krippendorff_alpha_ordinal", "percent_agreement",
)
LLM_METRICS = ("items", "valid", "dropped_confidence", "compared", "cohen_kappa_vs_human", "agreement_vs_human")
ANNOTATOR_METRICS = ("ratings", "items", "agreement_loo", "compared", "mean_confidence", "median_seconds", "left_share")


def report_json(*, report: dict) -> str:
    return json.dumps(report, indent=2, default=str) + "\n"


def report_csv(*, report: dict) -> str:
    """Long format, one number a row: section, question, rater, metric, value (manifest rows hold JSON)."""
    buffer = io.StringIO()
    writer = csv_writer(buffer)  # rater and judge run names may begin with = + - @ (formula injection)
    writer.writerow(["section", "question", "rater", "metric", "value"])
    writer.writerow(["report", "", "", "study", report["study"]])
    writer.writerow(["report", "", "", "min_confidence", report["min_confidence"]])
    for key, q in report["questions"].items():
        for metric in QUESTION_METRICS:
            writer.writerow(["question", key, "Human", metric, _csv_value(q[metric])])
        for label, n in q["distribution"].items():
            writer.writerow(["question", key, "Human", f"distribution_{label}", n])
        win = q["win_rate"]
        for metric in ("challenger", "decisive", "sign_test_p"):
            writer.writerow(["win_rate", key, "Human", metric, _csv_value(win[metric])])
        writer.writerow(["win_rate", key, "Human", "ci95_low", _csv_value(win["ci95"][0])])
        writer.writerow(["win_rate", key, "Human", "ci95_high", _csv_value(win["ci95"][1])])
        for name, llm in q["llm"].items():
            for metric in LLM_METRICS:
                writer.writerow(["llm", key, name, metric, _csv_value(llm[metric])])
            for label, n in llm["distribution"].items():
                writer.writerow(["llm", key, name, f"distribution_{label}", n])
            for i, human_label in enumerate(report["labels"]):
                for j, llm_label in enumerate(report["labels"]):
                    writer.writerow(["llm", key, name, f"confusion_human_{human_label}_llm_{llm_label}", llm["confusion"][i][j]])
    for row in report["annotators"]:
        for metric in ANNOTATOR_METRICS:
            writer.writerow(["annotator", "", row["rater"], metric, _csv_value(row[metric])])
        writer.writerow(["annotator", "", row["rater"], "flags", " ".join(row["flags"])])
    for name, value in report["manifest"].items():
        writer.writerow(["manifest", "", "", name, json.dumps(value, sort_keys=True, default=str)])
    return buffer.getvalue()


def _csv_value(value):
    return "" if value is None else value


def report_context(*, report: dict) -> dict:
    """What the html templates need: the report, Figure 2 inline, and rows ready to loop over."""
    labels = report["labels"]
    series = figure2_series(report=report)
    return {
        "report": report,
        "labels": labels,
        "figure_svg": figure2_svg(report=report, embed_manifest=False),
        "figure_rows": [
            {"group": group, "question": key, "shares": [shares[label] for label in labels]}
            for group, by_question in series.items() for key, shares in by_question.items()
        ],
        "llm_rows": [
            {"question": key, "name": name, **llm, "confusion_rows": list(zip(labels, llm["confusion"]))}
            for key, q in report["questions"].items() for name, llm in q["llm"].items()
        ],
        "manifest_json": json.dumps(report["manifest"], indent=2, default=str),
    }


def report_html(*, report: dict) -> str:
    """A self-contained html document (inline css and svg) for download and the command line."""
    return render_to_string("annotation/reports/report_document.html", report_context(report=report))


# --- LaTeX (booktabs) -----------------------------------------------------------------------

def _tex_number(value, digits: int = 3) -> str:
    if value is None:
        return "--"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _tex_p(value) -> str:
    if value is None:
        return "--"
    return "$<$0.001" if value < 0.001 else f"{value:.3f}"


def report_tex(*, report: dict) -> str:
    """booktabs tables: human labels and agreement, LLM raters vs humans, annotators; manifest as comments."""
    labels = report["labels"]
    lines = [f"% Agreement report for study {report['study']}, min confidence {report['min_confidence']}"]
    lines += [f"% manifest {name}: {json.dumps(value, sort_keys=True, default=str)}"
              for name, value in report["manifest"].items() if name != "items"]
    items = report["manifest"]["items"]
    lines.append(f"% manifest items: count {items['count']}, sha256 {items['sha256']}")
    lines.append("% needs \\usepackage{booktabs}")
    study = tex_escape(report["study"])
    lines += [
        "", r"\begin{table}[t]", r"\centering", r"\small",
        r"\begin{tabular}{lrrrrrrrrrl}", r"\toprule",
        r"Question & Items & Valid & A (\%) & B (\%) & S (\%) & Fleiss $\kappa$ & Kripp.\ $\alpha$ & Agree (\%) "
        r"& Win B (\%) & 95\% CI, sign $p$ \\",
        r"\midrule",
    ]
    for key, q in report["questions"].items():
        valid = q["valid"]
        shares = [(f"{100 * q['distribution'][label] / valid:.1f}" if valid else "--") for label in labels]
        win = q["win_rate"]
        ci = ("--" if win["challenger"] is None
              else f"[{100 * win['ci95'][0]:.1f}, {100 * win['ci95'][1]:.1f}], {_tex_p(win['sign_test_p'])}")
        agree = "--" if q["percent_agreement"] is None else f"{100 * q['percent_agreement']:.1f}"
        win_share = "--" if win["challenger"] is None else f"{100 * win['challenger']:.1f}"
        lines.append(
            f"{tex_escape(q['label'])} ({key.upper()}) & {q['items']} & {valid} & {' & '.join(shares)} & "
            f"{_tex_number(q['fleiss_kappa'])} & {_tex_number(q['krippendorff_alpha'])} & {agree} & {win_share} & {ci} \\\\"
        )
    lines += [
        r"\bottomrule", r"\end{tabular}",
        rf"\caption{{Human evaluation of {study}: majority labels after dropping ratings with confidence below "
        rf"{report['min_confidence']}; A = {tex_escape(report['baseline'])} better, B = {tex_escape(report['challenger'])} "
        rf"better, S = similar. Win B: share of decisive labels won by B, bootstrap 95\% CI, two-sided sign test.}}",
        r"\end{table}",
    ]
    llm_rows = [(key, name, llm) for key, q in report["questions"].items() for name, llm in q["llm"].items()]
    if llm_rows:
        lines += [
            "", r"\begin{table}[t]", r"\centering", r"\small",
            r"\begin{tabular}{llrrrrrrr}", r"\toprule",
            r"Question & Rater & Valid & A (\%) & B (\%) & S (\%) & Compared & Cohen $\kappa$ & Agree (\%) \\",
            r"\midrule",
        ]
        for key, name, llm in llm_rows:
            valid = llm["valid"]
            shares = [(f"{100 * llm['distribution'][label] / valid:.1f}" if valid else "--") for label in labels]
            agree = "--" if llm["agreement_vs_human"] is None else f"{100 * llm['agreement_vs_human']:.1f}"
            lines.append(f"{key.upper()} & {tex_escape(name)} & {valid} & {' & '.join(shares)} & {llm['compared']} & "
                         f"{_tex_number(llm['cohen_kappa_vs_human'])} & {agree} \\\\")
        lines += [r"\bottomrule", r"\end{tabular}",
                  rf"\caption{{LLM raters of {study} against the human majority, on items valid in both.}}",
                  r"\end{table}"]
    if report["annotators"]:
        lines += [
            "", r"\begin{table}[t]", r"\centering", r"\small",
            r"\begin{tabular}{lrrrrl}", r"\toprule",
            r"Annotator & Ratings & Agree LOO (\%) & Mean conf. & Median s & Flags \\",
            r"\midrule",
        ]
        for row in report["annotators"]:
            agree = "--" if row["agreement_loo"] is None else f"{100 * row['agreement_loo']:.1f}"
            lines.append(f"{tex_escape(row['rater'])} & {row['ratings']} & {agree} & {row['mean_confidence']:.2f} & "
                         f"{_tex_number(row['median_seconds'], 1)} & {tex_escape(', '.join(row['flags']))} \\\\")
        lines += [r"\bottomrule", r"\end{tabular}",
                  rf"\caption{{Annotators of {study}: agreement with the leave-one-out majority.}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def report_render(*, report: dict, fmt: str) -> str | bytes:
    """The report in one of FORMATS: text for all but png, which is bytes."""
    if fmt == "json":
        return report_json(report=report)
    if fmt == "csv":
        return report_csv(report=report)
    if fmt == "html":
        return report_html(report=report)
    if fmt == "tex":
        return report_tex(report=report)
    if fmt == "svg":
        return figure2_svg(report=report)
    if fmt == "png":
        return figure2_png(report=report)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
