"""Staff pages for model runs: systems with their metrics, the Table 3 builder, ablation plots.

Every view parses a GET form, calls modeling/tables/ and renders; the table and the plot
are the same code the `results_table` command exports.
"""
from urllib.parse import urlencode

from django import forms
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from common.permissions import staff_required

from .grag.config import launch_fields, methods_with
from .metrics import METRICS
from .models import Dataset, MetricResult, System
from .tables import (
    ABLATION_PARAMS,
    CONTENT_TYPES,
    FORMATS,
    HEADERS,
    PARAM_SYMBOLS,
    TableError,
    ablation_plot,
    ablation_series,
    fmt_value,
    result_table,
    systems_table,
    table_export,
    unit,
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
    param = forms.ChoiceField(choices=[(p, PARAM_SYMBOLS[p]) for p in ABLATION_PARAMS], initial="beta",
                              label="Swept parameter",
                              help_text="The hyper-parameter on the x axis, read from each run's config.")
    metric = forms.ChoiceField(choices=[(m, f"{HEADERS[m]} ({unit(m)})") for m in METRICS], initial="rouge2")
    method = forms.ChoiceField(
        choices=[("", "any that uses it"), *System.Method.choices], required=False,
        help_text="Figure 3: PreGRAG or PostGRAG over β; Figure 4: PostGRAG over α.",
    )
    split = forms.ChoiceField(choices=SPLITS, initial="test")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Offer only the methods that train with the swept parameter (PreSFT(Hist) has no β or α).
        param = self.data.get("param") if self.is_bound else None
        param = param if param in ABLATION_PARAMS else self.fields["param"].initial
        names = dict(System.Method.choices)
        # (The field still accepts every method, so clean() can say why another one does not fit.)
        self.fields["method"].widget.choices = [("", "any that uses it"), *[(m, names[m]) for m in methods_with(param)]]

    def clean(self):
        data = super().clean()
        param, method = data.get("param"), data.get("method")
        if param and method and method not in methods_with(param):
            names = dict(System.Method.choices)
            self.add_error("method", f"{names.get(method, method)} does not train with {PARAM_SYMBOLS[param]}; "
                                     f"choose {' or '.join(names[m] for m in methods_with(param))}.")
        return data

    def series(self):
        data = self.cleaned_data
        systems = System.objects.select_related("dataset")
        if data.get("method"):
            systems = systems.filter(method=data["method"])
        return ablation_series(systems=systems, param=data["param"], metric=data["metric"], split=data["split"])


class SystemFilter(forms.Form):
    q = forms.CharField(required=False, label="Search", help_text="Part of a system's name, method or backbone.")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), to_field_name="name", required=False,
                                     empty_label="any")
    split = forms.ChoiceField(choices=SPLITS, initial="test", required=False)

    def systems(self):
        systems = System.objects.select_related("dataset").order_by("dataset__name", "name")
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("dataset"):
            systems = systems.filter(dataset=data["dataset"])
        if q := (data.get("q") or "").strip():
            systems = systems.filter(Q(name__icontains=q) | Q(method__icontains=q) | Q(backbone__icontains=q))
        return _system_order(systems)

    def chosen_split(self) -> str:
        return (self.cleaned_data.get("split") if self.is_valid() else None) or "test"


SYSTEM_DOWNLOADS = ("csv", "json")


@require_GET
@staff_required
def system_list(request):
    """Every system with its run-level metrics on a split, each linked to its page; CSV / JSON downloads."""
    form = SystemFilter(request.GET or None)
    systems = form.systems()
    split = form.chosen_split()
    table = systems_table(systems=systems, split=split)
    by_name = {s.name: s for s in systems}
    rows = [(by_name[r.system], r) for r in table.rows]
    query = request.GET.urlencode()
    downloads = [(fmt, f"{reverse('modeling:system_list_download', args=[fmt])}?{query}") for fmt in SYSTEM_DOWNLOADS]
    return render(request, "modeling/system_list.html", {
        "form": form, "rows": rows, "columns": [(HEADERS[m], unit(m)) for m in METRICS], "split": split,
        "downloads": downloads,
    })


@require_GET
@staff_required
def system_list_download(request, fmt: str):
    """The systems table as shown on /results/ (same filters), through tables.table_export."""
    if fmt not in SYSTEM_DOWNLOADS:
        return HttpResponse(f"Unknown format {fmt!r}; choose one of {', '.join(SYSTEM_DOWNLOADS)}.", status=404,
                            content_type="text/plain")
    form = SystemFilter(request.GET or None)
    table = systems_table(systems=form.systems(), split=form.chosen_split())
    response = HttpResponse(table_export(table, fmt), content_type=f"{CONTENT_TYPES[fmt]}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="systems-{table.split}.{fmt}"'
    return response


RESPONSES_PER_PAGE = 20


@require_GET
@staff_required
def system_detail(request, pk: int):
    """One system: its config, its metrics on every split, and its responses beside the reference
    and the generic response (searchable, paginated)."""
    system = get_object_or_404(System.objects.select_related("dataset"), pk=pk)
    metrics: dict[str, dict[str, float]] = {}
    for split, name, value in MetricResult.objects.filter(
        system=system, sample__isnull=True, name__in=METRICS
    ).values_list("split", "name", "value"):
        metrics.setdefault(split, {})[name] = value
    metric_rows = [(split, [fmt_value(values.get(m)) for m in METRICS]) for split, values in sorted(metrics.items())]
    q = (request.GET.get("q") or "").strip()
    responses = system.responses.select_related("sample").order_by("sample__split", "sample__key")
    splits = sorted(set(system.responses.values_list("sample__split", flat=True)))
    split = request.GET.get("split") or ""
    if split:
        responses = responses.filter(sample__split=split)
    if q:
        responses = responses.filter(Q(text__icontains=q) | Q(sample__reference__icontains=q)
                                     | Q(sample__generic_response__icontains=q) | Q(sample__key__icontains=q))
    page = Paginator(responses, RESPONSES_PER_PAGE).get_page(request.GET.get("page"))
    query = {k: v for k, v in (("q", q), ("split", split)) if v}
    return render(request, "modeling/system_detail.html", {
        "system": system, "config": config_rows(system.config), "generation": config_rows(system.generation),
        "metric_rows": metric_rows, "columns": [(HEADERS[m], unit(m)) for m in METRICS],
        "page": page, "q": q, "split": split, "splits": splits, "query": urlencode(query),
    })


def config_rows(config: dict) -> list[tuple[str, str]]:
    """(label, value) of a System's config: GRAGConfig's launch labels where it has one, paths as names."""
    labels = {f.name: f.metadata["label"] for f in launch_fields()}
    rows = []
    for key, value in (config or {}).items():
        if key == "method":
            value = dict(System.Method.choices).get(value, value)
        elif isinstance(value, str) and ("/" in value) and key.endswith(("_dir", "path", "_file")):
            value = value.rstrip("/").rsplit("/", 1)[-1]
        elif isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list | dict):
            value = ", ".join(map(str, value)) if isinstance(value, list) else ", ".join(f"{k}: {v}" for k, v in value.items())
        rows.append((labels.get(key, key.replace("_", " ").capitalize()), value))
    return rows


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
