"""One open flag per (annotator, item), and the participant status no_work (issue 21, attacker review).

Before the constraint, earlier open duplicates are marked resolved (at the newest one's time,
by nobody), so a database with flag spam migrates; the newest open flag of each pair stays open.
"""
from django.conf import settings
from django.db import migrations, models
from django.db.models import Max


def resolve_duplicate_open_flags(apps, schema_editor):
    Flag = apps.get_model("annotation", "Flag")
    open_flags = Flag.objects.filter(resolved_at__isnull=True)
    pairs = open_flags.values("annotator_id", "item_id").annotate(newest=Max("pk"), at=Max("created_at"))
    for pair in pairs:
        open_flags.filter(annotator_id=pair["annotator_id"], item_id=pair["item_id"], pk__lt=pair["newest"]).update(
            resolved_at=pair["at"])


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0005_enrolment'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(resolve_duplicate_open_flags, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='participant',
            name='status',
            field=models.CharField(choices=[('onboarding', 'Onboarding'), ('active', 'Active'), ('finished', 'Finished'), ('no_work', 'No item left (none completed)'), ('screened_out', 'Screened out'), ('left', 'Left'), ('timed_out', 'Out of time')], default='active', max_length=12),
        ),
        migrations.AddConstraint(
            model_name='flag',
            constraint=models.UniqueConstraint(condition=models.Q(('resolved_at__isnull', True)), fields=('annotator', 'item'), name='flag_one_open_per_annotator_item'),
        ),
    ]
