"""Abstention and run reliability (issue 16): JudgeRun.min_option_mass and .reliability,
JudgeVerdict.option_mass and .abstained.

Runs made before abstention existed keep min_option_mass 0 (none of their verdicts abstained
when their ratings were written, and resuming one must not change that); new runs get the
default. Verdicts get their option mass from raw["option_mass"], where it was stored before.
"""
from django.db import migrations, models


def forwards(apps, schema_editor):
    JudgeRun = apps.get_model("judge", "JudgeRun")
    JudgeVerdict = apps.get_model("judge", "JudgeVerdict")
    JudgeRun.objects.update(min_option_mass=0.0)
    for verdict in JudgeVerdict.objects.filter(failed=False).only("pk", "raw").iterator():
        mass = (verdict.raw or {}).get("option_mass")
        if isinstance(mass, (int, float)):
            JudgeVerdict.objects.filter(pk=verdict.pk).update(option_mass=float(mass))


class Migration(migrations.Migration):

    dependencies = [
        ("judge", "0002_alter_judgerun_status"),
    ]

    operations = [
        migrations.AddField(
            model_name="judgerun",
            name="min_option_mass",
            field=models.FloatField(
                default=0.5,
                help_text="A verdict whose option letters got less of the next-token probability abstains (docs/judge.md).",
            ),
        ),
        migrations.AddField(
            model_name="judgerun",
            name="reliability",
            field=models.JSONField(
                blank=True, default=dict,
                help_text="Verdict (reliable / warnings / unreliable), reasons and figures, set when the run finishes.",
            ),
        ),
        migrations.AddField(
            model_name="judgeverdict",
            name="option_mass",
            field=models.FloatField(
                blank=True, null=True,
                help_text="Probability of the option tokens before renormalising (null: not measured).",
            ),
        ),
        migrations.AddField(
            model_name="judgeverdict",
            name="abstained",
            field=models.BooleanField(default=False, help_text="Option mass below the run's minimum: never a Rating."),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
