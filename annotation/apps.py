from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Blinded A/B annotation"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in
        from django.core import checks

        # lazy: ready() runs once every app is loaded; at the top, apps.py would load axes and the models too early
        from common.security import login_failures_clear

        # lazy: tokens imports the models (see above)
        from . import tokens  # noqa: F401 (connects the receivers that revoke tokens)

        user_logged_in.connect(login_failures_clear, dispatch_uid="login_failures_clear")
        # lazy: giveaways imports the models (see above)
        from .giveaways import giveaway_checks

        # `manage.py check --database default` flags open studies whose responses give their author away.
        checks.register(giveaway_checks, checks.Tags.database)
