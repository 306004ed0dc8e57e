"""URL patterns of this part of the app (included from grag_site/urls.py)."""
from django.urls import path  # noqa: F401

app_name = "worker"
urlpatterns: list = []
