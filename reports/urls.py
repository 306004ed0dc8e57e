"""URL patterns of this part of the app (included from grag_site/urls.py)."""
from django.urls import path

from . import views

app_name = "reports"
urlpatterns = [
    path("studies/<slug:slug>/report/", views.study_report, name="study_report"),
    path("studies/<slug:slug>/report/download/<str:fmt>/", views.study_report_download, name="study_report_download"),
    path("systems/ranking/", views.systems_ranking, name="systems_ranking"),
    path("systems/ranking/download/<str:fmt>/", views.systems_ranking_download, name="systems_ranking_download"),
]
