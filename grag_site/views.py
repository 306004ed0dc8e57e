from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import FileResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from worker.forms import LAUNCH_FORMS
from worker.models import Job


@require_GET
@login_required
def home(request):
    """Annotators see their studies; staff also see datasets, systems and jobs."""
    # Closed studies too: their annotators see "being prepared" instead of nothing at all.
    studies = request.user.studies.order_by("-is_open", "-created_at") if not request.user.is_staff else None
    launchable = [(kind, Job.Kind(kind).label) for kind in LAUNCH_FORMS if kind != "pipeline"]
    return render(request, "home.html", {"studies": studies, "launchable": launchable})


@require_GET
def healthz(request):
    """Liveness for load balancers: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


FAVICON = Path(__file__).resolve().parent / "static" / "favicon.ico"


@require_GET
def favicon(request):
    """/favicon.ico, which browsers ask for on pages that name no icon (admin, API, plain errors)."""
    response = FileResponse(FAVICON.open("rb"), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response
