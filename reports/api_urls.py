"""URL patterns of this part of the app (included from grag_site/urls.py)."""
from django.urls import path

from .api import StudyReportView

app_name = "reports_api"
urlpatterns = [
    path("studies/<slug:slug>/report/", StudyReportView.as_view(), name="study_report"),
]
