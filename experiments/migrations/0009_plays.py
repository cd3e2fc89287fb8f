"""Plays, and the per-user sums of listening metrics and of all traffic (issue "listening metrics beside CTR").

Adds: the outbox's PLAY rows (kind 4, two nullable columns: ``listened_seconds``, ``skipped``; the
outbox and quarantine ``experiment_id`` / ``variant_id`` become nullable for pages served outside any
experiment, and so do ``Page``'s and ``Click``'s); the ``Play`` table; plays, long listens, short plays
and listened seconds beside impressions and clicks in ``UserAggregate``, ``DailyUserRollup`` and
``VariantDailyMoments`` (with the squares and products of the ratio metrics); ``UserDailyTraffic``
(every user's traffic per day, experiment or not); the pre-period sums on ``UserAggregate`` and the
experiment's ``pre_period_days`` (14). New columns carry database defaults, so every writer that does
not name them (older SQL, benches) still works, and adding them rewrites no table.

Backfill: ``UserDailyTraffic`` from the pages and clicks landed so far (no plays existed; a page whose
outbox or quarantine row still waits is left to the worker, which adds it when it lands), then the
pre-period sums of every existing ``UserAggregate`` row from it, as the worker computes them for new users.
Reverse: the schema goes back; the backfilled rows go with the dropped columns and table.
"""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models

TRAFFIC_FROM_EVENTS = """
INSERT INTO experiments_userdailytraffic (user_key, day, impressions, clicks)
SELECT user_key, day, sum(i), sum(c) FROM (
    SELECT user_key, (created_at AT TIME ZONE 'UTC')::date AS day, cardinality(track_ids) AS i, 0 AS c
    FROM experiments_page p
    WHERE NOT EXISTS (SELECT 1 FROM experiments_eventoutbox o WHERE o.kind = 3 AND o.request_id = p.request_id)
      AND NOT EXISTS (SELECT 1 FROM experiments_eventquarantine q WHERE q.kind = 3 AND q.request_id = p.request_id)
    UNION ALL
    SELECT user_key, (created_at AT TIME ZONE 'UTC')::date, 0, 1 FROM experiments_click) e
GROUP BY user_key, day
"""

PRE_PERIOD_SUMS = """
UPDATE experiments_useraggregate u SET pre_impressions = p.i, pre_clicks = p.c
FROM (SELECT a.id, sum(t.impressions) AS i, sum(t.clicks) AS c
      FROM experiments_useraggregate a
      JOIN experiments_experiment e ON e.id = a.experiment_id
      JOIN experiments_userdailytraffic t ON t.user_key = a.user_key
       AND t.day >= (a.first_seen AT TIME ZONE 'UTC')::date - e.pre_period_days
       AND t.day < (a.first_seen AT TIME ZONE 'UTC')::date
      GROUP BY a.id) p
WHERE u.id = p.id
"""


class Migration(migrations.Migration):

    dependencies = [
        ('experiments', '0008_pages_at_serving'),
        ('recommender', '0002_descriptions_fetch_log'),
    ]

    operations = [
        migrations.AddField(
            model_name='dailyuserrollup',
            name='listened_seconds',
            field=models.FloatField(db_default=0.0, default=0.0),
        ),
        migrations.AddField(
            model_name='dailyuserrollup',
            name='long_listens',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='dailyuserrollup',
            name='plays',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='dailyuserrollup',
            name='short_plays',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='eventoutbox',
            name='listened_seconds',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='eventoutbox',
            name='skipped',
            field=models.BooleanField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='eventquarantine',
            name='listened_seconds',
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='eventquarantine',
            name='skipped',
            field=models.BooleanField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='experiment',
            name='pre_period_days',
            field=models.PositiveSmallIntegerField(db_default=14, default=14, help_text="CUPED lookback: days of a user's traffic before their first exposure, summed when the user enters the experiment (0: no pre-period)", validators=[django.core.validators.MaxValueValidator(90)]),
        ),
        migrations.AddField(
            model_name='useraggregate',
            name='listened_seconds',
            field=models.FloatField(db_default=0.0, default=0.0),
        ),
        migrations.AddField(
            model_name='useraggregate',
            name='long_listens',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='useraggregate',
            name='plays',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='useraggregate',
            name='pre_clicks',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='useraggregate',
            name='pre_impressions',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='useraggregate',
            name='pre_listened_seconds',
            field=models.FloatField(db_default=0.0, default=0.0),
        ),
        migrations.AddField(
            model_name='useraggregate',
            name='pre_long_listens',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='useraggregate',
            name='pre_plays',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='useraggregate',
            name='pre_short_plays',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='useraggregate',
            name='short_plays',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='variantdailymoments',
            name='sum_clicks_listened_seconds',
            field=models.FloatField(db_default=0.0, default=0.0),
        ),
        migrations.AddField(
            model_name='variantdailymoments',
            name='sum_impressions_long_listens',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='variantdailymoments',
            name='sum_listened_seconds',
            field=models.FloatField(db_default=0.0, default=0.0),
        ),
        migrations.AddField(
            model_name='variantdailymoments',
            name='sum_listened_seconds_sq',
            field=models.FloatField(db_default=0.0, default=0.0),
        ),
        migrations.AddField(
            model_name='variantdailymoments',
            name='sum_long_listens',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='variantdailymoments',
            name='sum_long_listens_sq',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='variantdailymoments',
            name='sum_plays',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='variantdailymoments',
            name='sum_plays_short_plays',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='variantdailymoments',
            name='sum_plays_sq',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='variantdailymoments',
            name='sum_short_plays',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name='variantdailymoments',
            name='sum_short_plays_sq',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name='click',
            name='experiment',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='experiments.experiment'),
        ),
        migrations.AlterField(
            model_name='click',
            name='variant',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='experiments.variant'),
        ),
        migrations.AlterField(
            model_name='dailyuserrollup',
            name='clicks',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name='dailyuserrollup',
            name='impressions',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name='eventoutbox',
            name='experiment_id',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='eventoutbox',
            name='kind',
            field=models.PositiveSmallIntegerField(choices=[(1, 'Impression'), (2, 'Click'), (3, 'Recommendation'), (4, 'Play')]),
        ),
        migrations.AlterField(
            model_name='eventoutbox',
            name='variant_id',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='eventquarantine',
            name='experiment_id',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='eventquarantine',
            name='kind',
            field=models.PositiveSmallIntegerField(choices=[(1, 'Impression'), (2, 'Click'), (3, 'Recommendation'), (4, 'Play')]),
        ),
        migrations.AlterField(
            model_name='eventquarantine',
            name='variant_id',
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name='page',
            name='experiment',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='experiments.experiment'),
        ),
        migrations.AlterField(
            model_name='page',
            name='variant',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='experiments.variant'),
        ),
        migrations.AlterField(
            model_name='useraggregate',
            name='clicks',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AlterField(
            model_name='useraggregate',
            name='impressions',
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.CreateModel(
            name='Play',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('event_id', models.UUIDField(unique=True)),
                ('request_id', models.UUIDField()),
                ('user_key', models.BigIntegerField()),
                ('position', models.PositiveSmallIntegerField(help_text='1-based')),
                ('listened_seconds', models.FloatField()),
                ('skipped', models.BooleanField()),
                ('client_time', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(help_text='Server receive time')),
                ('experiment', models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='experiments.experiment')),
                ('track', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='recommender.track')),
                ('variant', models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='experiments.variant')),
            ],
        ),
        migrations.CreateModel(
            name='UserDailyTraffic',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('impressions', models.BigIntegerField(db_default=0, default=0)),
                ('clicks', models.BigIntegerField(db_default=0, default=0)),
                ('plays', models.BigIntegerField(db_default=0, default=0)),
                ('long_listens', models.BigIntegerField(db_default=0, default=0)),
                ('short_plays', models.BigIntegerField(db_default=0, default=0)),
                ('listened_seconds', models.FloatField(db_default=0.0, default=0.0)),
                ('user_key', models.BigIntegerField()),
                ('day', models.DateField(help_text='Server receive day (UTC)')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('user_key', 'day'), name='one_traffic_row_per_user_day')],
            },
        ),
        migrations.RunSQL("ALTER TABLE experiments_userdailytraffic SET (fillfactor = 70)",
                          reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(TRAFFIC_FROM_EVENTS, reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(PRE_PERIOD_SUMS, reverse_sql=migrations.RunSQL.noop),
    ]
