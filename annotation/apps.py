from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Blinded A/B annotation"

    def ready(self) -> None:
        from django.core import checks

        from . import tokens  # noqa: F401 (connects the receivers that revoke tokens)
        from .giveaways import giveaway_checks

        # `manage.py check --database default` flags open studies whose responses give their author away.
        checks.register(giveaway_checks, checks.Tags.database)
