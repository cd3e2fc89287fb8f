"""Placements and traffic layers; today's experiments land on ``track_page`` with their users where they were.

``track_page`` is created with the model active for the baseline arm as its default. Its layer takes the salt
of the experiment that runs now (else of the one paused last), and that experiment gets the buckets
[0, traffic_fraction x 10,000): the layer hash is ``bucket(salt, "traffic", user)``, the very hash that decided
who was inside its traffic fraction, and its variant hash is unchanged, so every user keeps their experiment and
variant. Other paused experiments hold no buckets yet: they take free ones when resumed (their users hash anew).
"""

import django.contrib.postgres.constraints
import django.core.validators
import django.db.models.deletion
from django.contrib.postgres.operations import BtreeGistExtension
from django.db import migrations, models

import experiments.models

BUCKETS = 10_000
TRACK_PAGE = "track_page"


def _legacy_experiment(Experiment):
    """The experiment whose users must not move: the running one, else the one paused last."""
    for status in ("running", "paused"):
        found = Experiment.objects.filter(status=status).order_by("-started_at", "-id").first()
        if found is not None:
            return found
    return None


def create_track_page(apps, schema_editor):
    Placement = apps.get_model("experiments", "Placement")
    Experiment = apps.get_model("experiments", "Experiment")
    EmbeddingModel = apps.get_model("recommender", "EmbeddingModel")
    legacy = _legacy_experiment(Experiment)
    baseline = EmbeddingModel.objects.filter(active_for_arm="baseline").first()
    fields = {"name": "Track page", "default_model": baseline}
    if legacy is not None:
        fields["layer_salt"] = legacy.salt
    Placement.objects.create(key=TRACK_PAGE, **fields)


def allocate_legacy_buckets(apps, schema_editor):
    Experiment = apps.get_model("experiments", "Experiment")
    BucketAllocation = apps.get_model("experiments", "BucketAllocation")
    legacy = _legacy_experiment(Experiment)
    if legacy is None:
        return
    end = round(float(legacy.traffic_fraction) * BUCKETS)
    if end > 0:
        from django.utils import timezone

        BucketAllocation.objects.create(placement_id=TRACK_PAGE, experiment=legacy, start=0, end=end,
                                        allocated_at=legacy.started_at or timezone.now())


class Migration(migrations.Migration):

    dependencies = [
        ('experiments', '0012_metric_plan'),
        ('recommender', '0002_descriptions_fetch_log'),
    ]

    operations = [
        BtreeGistExtension(),
        migrations.AlterField(
            model_name='experiment',
            name='kind',
            field=models.CharField(choices=[('ab', 'A/B test'), ('interleaving', 'interleaving (team draft)'), ('holdout', 'holdout')], default='ab', help_text='A/B: each user sees one variant; interleaving: each user sees both, merged; holdout: users kept on the model of its start', max_length=20),
        ),
        migrations.AddField(
            model_name='experiment',
            name='scheduled_start_at',
            field=models.DateTimeField(blank=True, help_text="Started by the worker's schedule clock at this time", null=True),
        ),
        migrations.AddField(
            model_name='experiment',
            name='scheduled_stop_at',
            field=models.DateTimeField(blank=True, help_text="Stopped by the worker's schedule clock at this time", null=True),
        ),
        migrations.AlterField(
            model_name='experiment',
            name='traffic_fraction',
            field=models.FloatField(default=1.0, help_text="Share of the placement's users (its layer's buckets) the experiment takes when it starts; the others get the placement's default model or another experiment", validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(1.0)]),
        ),
        migrations.CreateModel(
            name='Placement',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.SlugField(help_text="The API's placement parameter", unique=True)),
                ('name', models.CharField(blank=True, max_length=200)),
                ('layer_salt', models.CharField(default=experiments.models.new_salt, help_text='Hash salt of the layer; fixed', max_length=64)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('default_model', models.ForeignKey(blank=True, help_text='Serves every request no experiment claims; empty: the model active for the baseline arm', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='default_for_placements', to='recommender.embeddingmodel')),
            ],
            options={
                'ordering': ['key'],
            },
        ),
        migrations.RunPython(create_track_page, migrations.RunPython.noop),
        migrations.CreateModel(
            name='Launch',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('variant_key', models.CharField(blank=True, max_length=50)),
                ('verdict', models.TextField(blank=True, help_text="The experiment's verdict when it shipped")),
                ('launched_by', models.CharField(blank=True, max_length=150)),
                ('launched_at', models.DateTimeField()),
                ('experiment', models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='launches', to='experiments.experiment')),
                ('model', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='recommender.embeddingmodel')),
                ('previous_model', models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='recommender.embeddingmodel')),
                ('placement', models.ForeignKey(db_column='placement', on_delete=django.db.models.deletion.PROTECT, related_name='launches', to='experiments.placement', to_field='key')),
            ],
            options={
                'ordering': ['-launched_at'],
            },
        ),
        migrations.AddField(
            model_name='experiment',
            name='placement',
            field=models.ForeignKey(db_column='placement', default='track_page', on_delete=django.db.models.deletion.PROTECT, related_name='experiments', to='experiments.placement', to_field='key'),
        ),
        migrations.CreateModel(
            name='BucketAllocation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('start', models.PositiveIntegerField()),
                ('end', models.PositiveIntegerField()),
                ('allocated_at', models.DateTimeField()),
                ('released_at', models.DateTimeField(blank=True, null=True)),
                ('experiment', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='allocations', to='experiments.experiment')),
                ('placement', models.ForeignKey(db_column='placement', on_delete=django.db.models.deletion.PROTECT, related_name='allocations', to='experiments.placement', to_field='key')),
            ],
            options={
                'ordering': ['placement', 'start'],
                'constraints': [models.CheckConstraint(condition=models.Q(('start__gte', 0), ('end__lte', 10000), ('start__lt', models.F('end'))), name='allocation_within_layer'), django.contrib.postgres.constraints.ExclusionConstraint(condition=models.Q(('released_at__isnull', True)), expressions=[(models.F('placement'), '='), (models.Func(models.F('start'), models.F('end'), function='int4range'), '&&')], name='no_shared_buckets_in_a_layer')],
            },
        ),
        migrations.RunPython(allocate_legacy_buckets, migrations.RunPython.noop),
    ]
