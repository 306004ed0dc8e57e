"""Staff pages for jobs, mounted at /jobs/."""
from django.urls import path

from . import views

app_name = "worker"
urlpatterns = [
    path("", views.job_list, name="job_list"),
    path("<int:pk>/", views.job_detail, name="job_detail"),
    path("<int:pk>/cancel/", views.job_cancel_view, name="job_cancel"),
    path("<int:pk>/retry/", views.job_retry_view, name="job_retry"),
    path("launch/<str:kind>/", views.job_launch_view, name="job_launch"),
]
