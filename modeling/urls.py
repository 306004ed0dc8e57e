"""Staff pages for model runs, mounted at /results/ (grag_site/urls.py)."""
from django.urls import path

from . import views

app_name = "modeling"
urlpatterns = [
    path("", views.system_list, name="system_list"),
    path("systems.<str:fmt>", views.system_list_download, name="system_list_download"),
    path("systems/<int:pk>/", views.system_detail, name="system_detail"),
    path("table/", views.table_builder, name="table_builder"),
    path("table/download/<str:fmt>/", views.table_download, name="table_download"),
    path("ablation/", views.ablation, name="ablation"),
    path("ablation/plot.<str:fmt>", views.ablation_plot_view, name="ablation_plot"),
]
