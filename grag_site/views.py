from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
@login_required
def home(request):
    """Annotators see their studies; staff also see datasets, systems and jobs."""
    from worker.forms import LAUNCH_FORMS

    # Closed studies too: their annotators see "being prepared" instead of nothing at all.
    studies = request.user.studies.order_by("-is_open", "-created_at") if not request.user.is_staff else None
    launchable = [kind for kind in LAUNCH_FORMS if kind != "pipeline"]
    return render(request, "home.html", {"studies": studies, "launchable": launchable})


@require_GET
def healthz(request):
    """Liveness for load balancers: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
