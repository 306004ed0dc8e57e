from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
@login_required
def home(request):
    """Annotators see their studies; staff also see datasets, systems and jobs."""
    studies = request.user.studies.filter(is_open=True) if not request.user.is_staff else None
    return render(request, "home.html", {"studies": studies})


@require_GET
def healthz(request):
    """Liveness for load balancers: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
