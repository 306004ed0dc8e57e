"""The paper's Figure 2: shares of baseline / challenger / similar labels per question and rater group.

"Each group of three bars corresponds to one choice of one question [...] Within each group
the colors indicate annotator types (Human, LLM-145, LLM-2000)" (section 5.5, Figure 2).
Drawn on a bare matplotlib Figure (Agg canvas, no pyplot state) so that web requests in
several threads never share a figure.
"""
from __future__ import annotations

import io
import json

import matplotlib

matplotlib.use("Agg")  # no display on servers and workers; harmless when already set

from matplotlib import rc_context  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# Colour-blind-safe (Okabe-Ito), one per rater group in order: Human, then each LLM run.
COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
CHOICE_TICK = {"baseline": "A\n(baseline)", "challenger": "B\n(challenger)", "similar": "S\n(similar)"}


def figure2_series(*, report: dict) -> dict[str, dict[str, dict[str, float | None]]]:
    """Rater group -> question -> choice -> share of that group's valid labels."""
    series: dict[str, dict[str, dict[str, float | None]]] = {"Human": {}}
    for key, question in report["questions"].items():
        groups = {"Human": question, **question["llm"]}
        for group, numbers in groups.items():
            valid = numbers["valid"]
            series.setdefault(group, {})[key] = {
                label: (numbers["distribution"][label] / valid if valid else None) for label in report["labels"]
            }
    return series


def figure2_intervals(*, report: dict) -> dict[str, dict[str, dict[str, list]]]:
    """Rater group -> question -> choice -> [low, high] 95% interval of the share (issue 20's error bars).

    Human: the CLT interval of the human majority's shares; each LLM run: its own (naive) interval.
    The prediction-powered intervals are in the report's tables, not drawn: they belong to no one group.
    """
    intervals: dict[str, dict[str, dict[str, list]]] = {"Human": {}}
    for key, question in report["questions"].items():
        groups = {"Human": question.get("human_only"),
                  **{name: llm.get("judge_only") for name, llm in question["llm"].items()}}
        for group, numbers in groups.items():
            intervals.setdefault(group, {})[key] = {
                label: (numbers["ci95"][label] if numbers else [None, None]) for label in report["labels"]
            }
    return intervals
def group_label(*, report: dict, group: str) -> str:
    """A rater group's name as figures and tables show it: a judge run that is not reliable says so."""
    verdict = report.get("judge_runs", {}).get(group, {}).get("verdict", "")
    return f"{group} ({verdict})" if verdict in ("warnings", "unreliable") else group


def judge_runs_not_reliable(*, report: dict) -> list[str]:
    """One line per judge run that is not reliable: "NAME: verdict (reason; reason)"."""
    return [
        f"{name}: {run['verdict']}" + (f" ({'; '.join(run['reasons'])})" if run["reasons"] else "")
        for name, run in report.get("judge_runs", {}).items() if run["verdict"] in ("warnings", "unreliable")
    ]


def figure2(*, report: dict) -> Figure:
    series = figure2_series(report=report)
    intervals = figure2_intervals(report=report)
    keys = list(report["questions"])
    labels = report["labels"]
    groups = list(series)
    fig = Figure(figsize=(max(6.0, 2.4 * len(keys)), 3.8))
    # Fixed margins rather than a layout engine: the figure's shape never changes, and measuring
    # every text box for constrained layout costs more than the rest of the drawing.
    fig.subplots_adjust(left=0.07, right=0.99, top=0.82, bottom=0.2)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(groups))
    positions = [q * (len(labels) + 1) + c for q in range(len(keys)) for c in range(len(labels))]
    for g, group in enumerate(groups):
        heights = [
            (series[group].get(key, {}).get(label) or 0.0) * 100 for key in keys for label in labels
        ]
        offsets = [p - 0.4 + width * (g + 0.5) for p in positions]
        # 95% interval of each share as an error bar; none where the group has fewer than 2 labels.
        bounds = [intervals.get(group, {}).get(key, {}).get(label, [None, None]) for key in keys for label in labels]
        below = [h - 100 * b[0] if b[0] is not None else 0.0 for h, b in zip(heights, bounds)]
        above = [100 * b[1] - h if b[1] is not None else 0.0 for h, b in zip(heights, bounds)]
        ax.errorbar(offsets, heights, yerr=[[max(0.0, v) for v in below], [max(0.0, v) for v in above]],
                    fmt="none", ecolor="#333333", elinewidth=0.8, capsize=1.5)
        label = group_label(report=report, group=group)
        # A judge run that is not reliable is hatched and labelled, never drawn like any other rater.
        ax.bar(offsets, heights, width=width, label=label, color=COLOURS[g % len(COLOURS)],
               hatch="//" if label != group else None, alpha=0.6 if label != group else 1.0)
    ax.set_xticks(positions, [f"{key.upper()} {CHOICE_TICK.get(label, label)}" for key in keys for label in labels],
                  fontsize=7)
    ax.set_ylabel("share of valid labels (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{report['study']}: {report['baseline']} (A) vs {report['challenger']} (B), "
                 f"min confidence {report['min_confidence']}", fontsize=9, pad=22)
    ax.legend(fontsize=8, frameon=False, ncols=min(4, len(groups)), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.grid(axis="y", alpha=0.3)
    warnings = judge_runs_not_reliable(report=report)
    if warnings:
        fig.subplots_adjust(bottom=0.2 + 0.045 * len(warnings))
        fig.text(0.01, 0.01, "\n".join(f"Judge run {line}" for line in warnings), fontsize=6.5, color="#B00020",
                 va="bottom", wrap=True)
    return fig


def _manifest_text(report: dict) -> str:
    manifest = dict(report.get("manifest", {}))
    return json.dumps(manifest, sort_keys=True, default=str)


def figure2_svg(*, report: dict, embed_manifest: bool = True) -> str:
    """Figure 2 as SVG text; the exported file carries the manifest in its metadata."""
    buffer = io.StringIO()
    metadata = {"Title": f"Figure 2: {report['study']}"}
    if embed_manifest:
        metadata["Description"] = _manifest_text(report)
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": report["study"]}):
        figure2(report=report).savefig(buffer, format="svg", metadata=metadata)
    text = buffer.getvalue()
    return text if embed_manifest else text[text.index("<svg"):]  # inline in HTML: no XML prologue


def figure2_png(*, report: dict, dpi: int = 200) -> bytes:
    """Figure 2 as PNG bytes, with the manifest in a PNG text chunk."""
    buffer = io.BytesIO()
    figure2(report=report).savefig(
        buffer, format="png", dpi=dpi,
        metadata={"Title": f"Figure 2: {report['study']}", "Description": _manifest_text(report)},
    )
    return buffer.getvalue()
