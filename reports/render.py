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

from .figures import figure2_png, figure2_series, figure2_svg, group_label, judge_runs_not_reliable

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
    _csv_issue20(writer, report)
    for name, run in report.get("judge_runs", {}).items():
        writer.writerow(["judge_run", "", name, "reliability", run["verdict"]])
        writer.writerow(["judge_run", "", name, "reliability_reasons", "; ".join(run["reasons"])])
        for check, figures in run["checks"].items():
            writer.writerow(["judge_run", "", name, f"reliability_{check}", figures["figure"]])
    for row in report["annotators"]:
        for metric in ANNOTATOR_METRICS:
            writer.writerow(["annotator", "", row["rater"], metric, _csv_value(row[metric])])
        writer.writerow(["annotator", "", row["rater"], "flags", " ".join(row["flags"])])
    for name, value in report["manifest"].items():
        writer.writerow(["manifest", "", "", name, json.dumps(value, sort_keys=True, default=str)])
    return buffer.getvalue()


def _csv_value(value):
    return "" if value is None else value


# --- issue 20: robust agreement, human + judge combined, judge audit, power --------------------------------

QUESTION_EXTRA = ("gwet_ac1", "prevalence_index", "bias_index", "dominant_category", "agreement_ci95", "interval_withheld",
                  "human_only", "smallest_detectable_gap", "human_length_preference")
LLM_EXTRA = ("judge_only", "ppi", "audit")


def _flat(prefix: str, value):
    """(metric, value) rows of a nested dict or list, keys joined by "_" (e.g. ppi_win_rate_ci95_0)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flat(f"{prefix}_{key}", inner)
    elif isinstance(value, (list, tuple)):
        for index, inner in enumerate(value):
            yield from _flat(f"{prefix}_{index}", inner)
    else:
        yield prefix, value


def _csv_issue20(writer, report: dict) -> None:
    for key, q in report["questions"].items():
        for field in QUESTION_EXTRA:
            for metric, value in _flat(field, q.get(field)):
                writer.writerow(["question", key, "Human", metric, _csv_value(value)])
        for name, llm in q["llm"].items():
            for field in LLM_EXTRA:
                for metric, value in _flat(field, llm.get(field)):
                    writer.writerow(["llm", key, name, metric, _csv_value(value)])
    for name, judge in report.get("judges", {}).items():
        for metric, value in _flat("judge", judge):
            writer.writerow(["judge", "", name, metric, _csv_value(value)])


def report_context(*, report: dict) -> dict:
    """What the html templates need: the report, Figure 2 inline, and rows ready to loop over."""
    labels = report["labels"]
    series = figure2_series(report=report)
    return {
        "report": report,
        "labels": labels,
        "figure_svg": figure2_svg(report=report, embed_manifest=False),
        "judge_run_warnings": judge_runs_not_reliable(report=report),
        "figure_rows": [
            {"group": group_label(report=report, group=group), "question": key,
             "shares": [shares[label] for label in labels]}
            for group, by_question in series.items() for key, shares in by_question.items()
        ],
        "llm_rows": [
            {"question": key, "name": group_label(report=report, group=name), **llm,
             "confusion_rows": list(zip(labels, llm["confusion"]))}
            for key, q in report["questions"].items() for name, llm in q["llm"].items()
        ],
        "manifest_json": json.dumps(report["manifest"], indent=2, default=str),
        **_context_issue20(report),
    }


def _context_issue20(report: dict) -> dict:
    """Rows for the issue 20 sections of the html report (robust agreement, combined labels, judge audit)."""
    return {
        "agreement_rows": [{"question": key, "q": q, "ci": q.get("agreement_ci95", {})}
                           for key, q in report["questions"].items()],
        "combined_rows": [{"question": key, "name": name, "human": q.get("human_only"), "judge": llm.get("judge_only"),
                           "ppi": llm.get("ppi")}
                          for key, q in report["questions"].items() for name, llm in q["llm"].items() if llm["items"]],
        "audit_rows": [{"question": key, "name": name, "audit": llm.get("audit"), "kappa": llm.get("cohen_kappa_vs_human"),
                        "human_length": q.get("human_length_preference")}
                       for key, q in report["questions"].items() for name, llm in q["llm"].items() if llm["items"]],
        "judges": report.get("judges", {}),
    }


def report_html(*, report: dict) -> str:
    """A self-contained html document (inline css and svg) for download and the command line."""
    return render_to_string("reports/report_document.html", report_context(report=report))


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
        rf"better, S = similar. Win B: share of decisive labels won by B, bootstrap 95\% CI, two-sided sign test."
        # With no LLM table (every verdict abstained), the note on a run that is not reliable goes here.
        + ("".join(f" Judge run {tex_escape(line)}." for line in judge_runs_not_reliable(report=report))
           if not any(q["llm"] for q in report["questions"].values()) else "") + "}",
        r"\end{table}",
    ]
    llm_rows = [(key, name, llm) for key, q in report["questions"].items() for name, llm in q["llm"].items()]
    warnings = judge_runs_not_reliable(report=report)
    lines += [f"% judge run {line}" for line in warnings]
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
            lines.append(f"{key.upper()} & {tex_escape(group_label(report=report, group=name))} & {valid} & {' & '.join(shares)} & {llm['compared']} & "
                         f"{_tex_number(llm['cohen_kappa_vs_human'])} & {agree} \\\\")
        lines += [r"\bottomrule", r"\end{tabular}",
                  rf"\caption{{LLM raters of {study} against the human majority, on items valid in both."
                  + "".join(f" Judge run {tex_escape(line)}." for line in warnings) + "}",
                  r"\end{table}"]
    lines += _tex_issue20(report)
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


def _tex_ci(value, ci, digits: int = 3, scale: float = 1.0) -> str:
    if value is None:
        return "--"
    text = f"{scale * value:.{digits}f}"
    if ci and ci[0] is not None:
        text += f" [{scale * ci[0]:.{digits}f}, {scale * ci[1]:.{digits}f}]"
    return text


def _tex_issue20(report: dict) -> list[str]:
    """Tables of issue 20: agreement robust to a dominant category; human + judge combined; judge audit."""
    study = tex_escape(report["study"])
    lines = [
        "", r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{lllllrrl}", r"\toprule",
        r"Question & Fleiss $\kappa$ & Kripp.\ $\alpha$ & Gwet AC1 & PI & BI & Min.\ gap & Dominant \\", r"\midrule",
    ]
    for key, q in report["questions"].items():
        ci = q.get("agreement_ci95", {})
        dominant = q.get("dominant_category")
        dom = "--" if not dominant else f"{tex_escape(dominant['label'])} ({100 * dominant['share']:.0f}\\%)"
        lines.append(f"{key.upper()} & {_tex_ci(q['fleiss_kappa'], ci.get('fleiss_kappa'), 2)} & "
                     f"{_tex_ci(q['krippendorff_alpha'], ci.get('krippendorff_alpha'), 2)} & "
                     f"{_tex_ci(q.get('gwet_ac1'), ci.get('gwet_ac1'), 2)} & {_tex_number(q.get('prevalence_index'), 2)} & "
                     f"{_tex_number(q.get('bias_index'), 2)} & {_tex_number(q.get('smallest_detectable_gap'), 2)} & {dom} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}",
              rf"\caption{{Agreement of the human raters of {study} with item-bootstrap 95\% intervals. Gwet's AC1 "
              r"(Gwet 2008) stays meaningful when one category dominates, where $\kappa$ and $\alpha$ collapse; "
              r"PI, BI: prevalence and bias indices (Byrt et al.\ 1993). Min.\ gap: smallest gap $2w-1$ in the "
              r"challenger's share $w$ of decisive labels detectable at power 0.8, $\alpha=0.05$.}", r"\end{table}"]
    rows = [(key, name, q, llm) for key, q in report["questions"].items() for name, llm in q["llm"].items()]
    if not rows:
        return lines
    lines += [
        "", r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{llllllrrr}", r"\toprule",
        r"Question & Judge & S human (\%) & S PPI (\%) & Win B human (\%) & Win B judge (\%) & Win B PPI (\%) "
        r"& $n$ / $N$ & Eff.\ $n$ \\", r"\midrule",
    ]
    for key, name, q, llm in rows:
        human, judge, combined = q.get("human_only", {}), llm.get("judge_only", {}), llm.get("ppi", {})
        lines.append(
            f"{key.upper()} & {tex_escape(name)} & "
            f"{_tex_ci(human['share']['similar'], human['ci95']['similar'], 1, 100)} & "
            f"{_tex_ci(combined['share']['similar'], combined['ci95']['similar'], 1, 100)} & "
            f"{_tex_ci(human['win_rate']['challenger'], human['win_rate']['ci95'], 1, 100)} & "
            f"{_tex_ci(judge['win_rate']['challenger'], judge['win_rate']['ci95'], 1, 100)} & "
            f"{_tex_ci(combined['win_rate']['challenger'], combined['win_rate']['ci95'], 1, 100)} & "
            f"{combined['labelled']} / {combined['judge_only']} & {_tex_number(combined.get('effective_human_labels'), 0)} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}",
              rf"\caption{{Human and judge labels of {study} combined by prediction-powered inference (Angelopoulos "
              r"et al.\ 2023), 95\% intervals beside the human-only and judge-only (naive) ones. $n$: items with both "
              r"labels, $N$: items only the judge labelled; Eff.\ $n$: human labels alone giving as narrow an interval.}",
              r"\end{table}"]
    lines += [
        "", r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{llrllrl}", r"\toprule",
        r"Question & Judge & Flips (\%) & First shown (\%) & Longer (\%) & ECE & Cohen $\kappa$ vs human \\", r"\midrule",
    ]
    for key, name, _q, llm in rows:
        a = llm.get("audit", {})
        lines.append(
            f"{key.upper()} & {tex_escape(name)} & {_tex_ci(a['flip_rate']['share'], None, 1, 100)} & "
            f"{_tex_ci(a['first_position']['share'], a['first_position']['ci95'], 1, 100)} & "
            f"{_tex_ci(a['length_preference']['share'], a['length_preference']['ci95'], 1, 100)} & "
            f"{_tex_number(a['calibration']['ece'])} & {_tex_ci(llm['cohen_kappa_vs_human'], a['cohen_kappa_ci95'], 2)} \\\\")
    flags = [f"{tex_escape(name)}: {tex_escape(j['self_preference']['judge_family'])} as the "
             f"{', '.join(j['self_preference']['matches'])}" for name, j in report.get("judges", {}).items()
             if j["self_preference"]["flag"]]
    lines += [r"\bottomrule", r"\end{tabular}",
              rf"\caption{{Audit of the judges of {study}: verdicts that changed with the order, share of decisive "
              r"single-order verdicts for the response shown first and of decisive verdicts for the longer response "
              r"(50\% = no preference; Wilson 95\% intervals), expected calibration error against the human majority, "
              r"Cohen's $\kappa$ with item-bootstrap 95\% interval. Same model family as a compared system: "
              + ("; ".join(flags) if flags else "none") + ".}", r"\end{table}"]
    return lines


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
