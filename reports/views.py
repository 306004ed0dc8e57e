"""Staff pages of the agreement report: the report with Figure 2, and its downloads."""
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from annotation.models import Study
from annotation.participants import staff_names
from common.permissions import staff_required

from .build import min_confidence_parse, report_build
from .ranking_build import RANKING_CONTENT_TYPES, RANKING_FORMATS, ranking_render, systems_ranking_build
from .render import CONTENT_TYPES, EXTENSIONS, FORMATS, report_context, report_render

DOWNLOAD_LABELS = [("json", "JSON"), ("csv", "CSV"), ("html", "HTML"), ("tex", "LaTeX"), ("svg", "Figure 2 (SVG)"),
                   ("png", "Figure 2 (PNG)")]


@require_GET
@staff_required
def study_report(request, slug: str):
    study = get_object_or_404(Study, slug=slug)
    context = {"study": study, "report_download_formats": DOWNLOAD_LABELS, "min_confidence": study.min_confidence,
               "report": None}
    try:
        min_confidence = min_confidence_parse(value=request.GET.get("min_confidence"), study=study)
    except ValueError as exc:
        return render(request, "reports/report_page.html", {**context, "error": str(exc)}, status=400)
    report = report_build(study=study, min_confidence=min_confidence)
    context.update(report_context(report=report), min_confidence=min_confidence, names=staff_names(study=study))
    return render(request, "reports/report_page.html", context)


@require_GET
@staff_required
def study_report_download(request, slug: str, fmt: str):
    if fmt not in FORMATS:
        raise Http404(f"Unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    study = get_object_or_404(Study, slug=slug)
    try:
        min_confidence = min_confidence_parse(value=request.GET.get("min_confidence"), study=study)
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    report = report_build(study=study, min_confidence=min_confidence)
    response = HttpResponse(report_render(report=report, fmt=fmt), content_type=CONTENT_TYPES[fmt])
    filename = f"{study.slug}-agreement-c{min_confidence}.{EXTENSIONS[fmt]}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- issue 20: systems ranked across studies ----------------------------------------------------------------

@require_GET
@staff_required
def systems_ranking(request):
    return render(request, "reports/ranking_page.html", {"ranking": systems_ranking_build()})


@require_GET
@staff_required
def systems_ranking_download(request, fmt: str):
    if fmt not in RANKING_FORMATS:
        raise Http404(f"Unknown ranking format {fmt!r}; choose one of {', '.join(RANKING_FORMATS)}.")
    response = HttpResponse(ranking_render(ranking=systems_ranking_build(), fmt=fmt), content_type=RANKING_CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="systems-ranking.{fmt}"'
    return response
