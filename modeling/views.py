"""Staff pages for model runs: systems with their metrics, the Table 3 builder, ablation plots.

Every view parses a GET form, calls modeling/tables.py and renders; the table and the plot
are the same code the `results_table` command exports.
"""
from urllib.parse import urlencode

from django import forms
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from common.permissions import staff_required

from .metrics import METRICS
from .models import MetricResult, System
from .tables import (
    ABLATION_PARAMS,
    CONTENT_TYPES,
    FORMATS,
    HEADERS,
    PARAM_SYMBOLS,
    TableError,
    ablation_plot,
    ablation_series,
    result_table,
    table_export,
)

SPLITS = [("test", "test"), ("valid", "valid"), ("train", "train")]
METHOD_ORDER = {value: i for i, value in enumerate(System.Method.values)}  # the paper's row order


def _system_order(systems) -> list[System]:
    """Table 3's order: by task (dataset), then the paper's method order."""
    return sorted(systems, key=lambda s: (s.dataset.name if s.dataset_id else "", METHOD_ORDER.get(s.method, 99), s.name))


class SystemsField(forms.ModelMultipleChoiceField):
    def __init__(self, **kwargs):
        super().__init__(
            queryset=System.objects.select_related("dataset"), to_field_name="name",
            widget=forms.CheckboxSelectMultiple, **kwargs,
        )

    def label_from_instance(self, obj):
        return f"{obj.name} ({obj.get_method_display()})"


class TableForm(forms.Form):
    systems = SystemsField(help_text="Rows, in the paper's method order.")
    baseline = forms.ModelChoiceField(
        queryset=System.objects.all(), to_field_name="name", required=False,
        help_text="imprv (%) rows compare each challenger with this system.",
    )
    challengers = SystemsField(required=False)
    split = forms.ChoiceField(choices=SPLITS, initial="test")

    def clean(self):
        data = super().clean()
        systems = set(data.get("systems") or [])
        baseline = data.get("baseline")
        challengers = list(data.get("challengers") or [])
        if baseline and baseline not in systems:
            self.add_error("baseline", f"The baseline {baseline.name} must be one of the chosen systems.")
        outside = [c.name for c in challengers if c not in systems]
        if outside:
            self.add_error("challengers", f"Challengers must be chosen systems too: {', '.join(outside)}.")
        if baseline and baseline in challengers:
            self.add_error("challengers", f"{baseline.name} cannot be both the baseline and a challenger.")
        if challengers and not baseline:
            self.add_error("baseline", "Choose the baseline the challengers are compared with.")
        return data

    def table(self):
        data = self.cleaned_data
        return result_table(
            systems=_system_order(data["systems"]), baseline=data.get("baseline"),
            challengers=_system_order(data.get("challengers") or []), split=data["split"],
        )


class AblationForm(forms.Form):
    param = forms.ChoiceField(choices=[(p, p) for p in ABLATION_PARAMS], initial="beta",
                              help_text="The swept hyper-parameter, read from each run's config.")
    metric = forms.ChoiceField(choices=[(m, HEADERS[m]) for m in METRICS], initial="rouge2")
    method = forms.ChoiceField(
        choices=[("", "any"), *System.Method.choices], required=False,
        help_text="Figure 3: PreGRAG or PostGRAG over beta; Figure 4: PostGRAG over alpha.",
    )
    split = forms.ChoiceField(choices=SPLITS, initial="test")

    def series(self):
        data = self.cleaned_data
        systems = System.objects.select_related("dataset")
        if data.get("method"):
            systems = systems.filter(method=data["method"])
        return ablation_series(systems=systems, param=data["param"], metric=data["metric"], split=data["split"])


@require_GET
@staff_required
def system_list(request):
    split = request.GET.get("split") or "test"
    systems = list(System.objects.select_related("dataset").order_by("dataset__name", "name"))
    values: dict[int, dict[str, float]] = {}
    for sys_id, name, value in MetricResult.objects.filter(
        split=split, sample__isnull=True, name__in=METRICS
    ).values_list("system_id", "name", "value"):
        values.setdefault(sys_id, {})[name] = value
    rows = [(s, [values.get(s.pk, {}).get(m) for m in METRICS]) for s in systems]
    return render(request, "modeling/system_list.html", {
        "rows": rows, "headers": [HEADERS[m] for m in METRICS], "split": split, "splits": SPLITS,
    })


@require_GET
@staff_required
def table_builder(request):
    form = TableForm(request.GET or None)
    table = error = None
    downloads = []
    if form.is_bound and form.is_valid():
        try:
            table = form.table()
        except TableError as exc:
            error = str(exc)
        else:
            query = request.GET.urlencode()
            downloads = [(fmt, f"{request.path}download/{fmt}/?{query}") for fmt in FORMATS]
    template = "modeling/table_builder.html#result" if request.htmx else "modeling/table_builder.html"
    return render(request, template, {"form": form, "table": table, "error": error, "downloads": downloads})


@require_GET
@staff_required
def table_download(request, fmt: str):
    form = TableForm(request.GET)
    if fmt not in FORMATS:
        return HttpResponse(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.", status=404,
                            content_type="text/plain")
    if not form.is_valid():
        return HttpResponse(f"Bad table request: {form.errors.as_text()}", status=400, content_type="text/plain")
    try:
        text = table_export(form.table(), fmt)
    except TableError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    response = HttpResponse(text, content_type=f"{CONTENT_TYPES[fmt]}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="table3.{fmt}"'
    return response


@require_GET
@staff_required
def ablation(request):
    form = AblationForm(request.GET or None)
    series = error = None
    plots = []
    if form.is_bound and form.is_valid():
        try:
            series = form.series()
        except TableError as exc:
            error = str(exc)
        else:
            query = urlencode(form.cleaned_data)
            plots = [(fmt, f"{request.path}plot.{fmt}?{query}") for fmt in ("svg", "png")]
    template = "modeling/ablation.html#result" if request.htmx else "modeling/ablation.html"
    return render(request, template, {"form": form, "series": series, "error": error, "plots": plots})


@require_GET
@staff_required
def ablation_plot_view(request, fmt: str):
    if fmt not in ("svg", "png"):
        return HttpResponse(f"Unknown plot format {fmt!r}; choose svg or png.", status=404, content_type="text/plain")
    form = AblationForm(request.GET)
    if not form.is_valid():
        return HttpResponse(f"Bad plot request: {form.errors.as_text()}", status=400, content_type="text/plain")
    try:
        series = form.series()
    except TableError as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    data = form.cleaned_data
    image = ablation_plot(series, param=data["param"], metric=data["metric"], fmt=fmt,
                          title=f"{dict(System.Method.choices).get(data['method'], 'All methods')}: "
                                f"{HEADERS[data['metric']]} w.r.t. {PARAM_SYMBOLS[data['param']]}")
    response = HttpResponse(image, content_type=CONTENT_TYPES[fmt])
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="ablation-{data["param"]}-{data["metric"]}.{fmt}"'
    return response
