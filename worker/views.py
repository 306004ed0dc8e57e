"""Staff pages to launch and watch jobs. Progress refreshes by htmx polling of a partial."""
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.forms import StudyPlanForm
from common.permissions import staff_required

from .display import JobLinks, made_links, param_rows, result_rows, stage_neighbours, stage_subject
from .forms import LAUNCH_FORMS
from .models import Job
from .pipeline import PlanError, pipeline_launch
from .registry import task_for_kind
from .selectors import job_list as select_jobs
from .selectors import jobs_active
from .services import BrokerUnavailable, job_cancel, job_launch, job_retry


def _launchable() -> list[tuple[str, str]]:
    """(kind, its label) of every job kind with a launch form."""
    return [(kind, Job.Kind(kind).label) for kind in LAUNCH_FORMS]


@require_GET
@staff_required
def job_list(request):
    jobs = list(select_jobs(status=request.GET.get("status") or None, kind=request.GET.get("kind") or None)[:200])
    template = "worker/job_list.html#jobs" if request.htmx else "worker/job_list.html"
    return render(
        request, template,
        {"jobs": jobs, "polling": jobs_active(jobs=jobs),
         "launchable": _launchable(),
         "kinds": Job.Kind.choices, "statuses": Job.Status.choices},
    )


@require_GET
@staff_required
def job_detail(request, pk: int):
    job = get_object_or_404(Job.objects.select_related("parent", "created_by"), pk=pk)
    children = list(job.children.order_by("pk"))
    for child in children:
        child.subject = stage_subject(child)
    # A pipeline that succeeded with a judge stage that is not reliable says so next to its status.
    not_reliable = [c for c in children if (c.result or {}).get("reliability", {}).get("verdict") in ("warnings", "unreliable")]
    links = JobLinks()
    links.prefetch([job, *children])
    previous, next_, position, stage_count = stage_neighbours(job)
    template = "worker/job_detail.html#status" if request.htmx else "worker/job_detail.html"
    return render(request, template, {
        "job": job, "children": children, "not_reliable_stages": not_reliable, "polling": jobs_active(jobs=[job, *children]),
        "params": param_rows(job, links), "results": result_rows(job, links), "made": made_links(job, children, links),
        "previous": previous, "next": next_, "position": position, "stage_count": stage_count,
    })


@require_POST
@staff_required
def job_cancel_view(request, pk: int):
    """Cancel a job once confirmed: a POST without ``confirm=yes`` (a page without the job page's
    confirm step) gets that step as its answer, with status 400, and cancels nothing."""
    job = get_object_or_404(Job, pk=pk)
    if request.POST.get("confirm") != "yes":
        return render(request, "worker/job_cancel_confirm.html", {"job": job}, status=400)
    job = job_cancel(job=job, by=request.user.get_username())
    messages.info(request, f"Asked {job} to stop.")
    return redirect("worker:job_detail", pk=job.pk)


@require_POST
@staff_required
def job_retry_view(request, pk: int):
    job = get_object_or_404(Job, pk=pk)
    try:
        job_retry(job=job)
    except (ValueError, BrokerUnavailable) as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"{job} queued again; it resumes from its last checkpoint or cache.")
    return redirect("worker:job_detail", pk=job.pk)


@require_http_methods(["GET", "POST"])
@staff_required
def job_launch_view(request, kind: str):
    form_class = LAUNCH_FORMS.get(kind)
    if form_class is None:
        return render(request, "worker/launch.html", {"unknown": kind, "launchable": _launchable()}, status=404)
    # A link may preselect fields (e.g. a system page's "compute metrics" names the system).
    form = form_class(request.POST or None, initial=None if request.method == "POST" else request.GET.dict())
    if request.method == "POST" and form.is_valid():
        try:
            if kind == Job.Kind.PIPELINE:
                job = pipeline_launch(plan=form.plan(), user=request.user)
            else:
                job = job_launch(kind=kind, task=task_for_kind(kind), params=form.job_params(), user=request.user)
        except (BrokerUnavailable, PlanError) as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Launched {job}.")
            return redirect("worker:job_detail", pk=job.pk)
    context = {"form": form, "kind": Job.Kind(kind), "launchable": _launchable()}
    if kind == Job.Kind.STUDY:  # size the study before launching it (the planner, issue 20)
        context["plan_form"] = StudyPlanForm(initial={"overlap": 3})
    return render(request, "worker/launch.html", context)
