from django.apps import AppConfig


class ReportsConfig(AppConfig):
    """Agreement reports, their statistics, Figure 2 and exports; reads annotation, judge and modeling."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "reports"
