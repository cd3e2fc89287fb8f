"""Per-experiment user-day rollups go (issue "Log pages, not items": WAL and ingest work per page).

Nothing read ``DailyUserRollup``: the analysis reads ``UserAggregate`` (per user) and
``VariantDailyMoments`` (per variant and day, kept incrementally), CUPED's pre-period comes from
``UserDailyTraffic``, and the per-item view answers ad-hoc questions. Each page still paid a row or an
update of it and two index entries: about 300 bytes of WAL per page, measured with
``bench/serve_load.py`` (pg_waldump by relation). Reverse: the table comes back, rebuilt from the raw
pages, clicks and plays.
"""

from django.db import migrations

REBUILD = """
INSERT INTO experiments_dailyuserrollup (experiment_id, variant_id, user_key, day, impressions, clicks, plays,
                                         long_listens, short_plays, listened_seconds)
SELECT experiment_id, min(variant_id), user_key, day, sum(i), sum(c), sum(p), sum(l), sum(s), sum(secs) FROM (
    SELECT experiment_id, variant_id, user_key, (created_at AT TIME ZONE 'UTC')::date AS day,
           cardinality(track_ids) AS i, 0 AS c, 0 AS p, 0 AS l, 0 AS s, 0.0::float8 AS secs FROM experiments_page
    UNION ALL SELECT experiment_id, variant_id, user_key, (created_at AT TIME ZONE 'UTC')::date, 0, 1, 0, 0, 0, 0.0
              FROM experiments_click
    UNION ALL SELECT experiment_id, variant_id, user_key, (created_at AT TIME ZONE 'UTC')::date, 0, 0, 1,
                     (listened_seconds >= 30)::int, (listened_seconds < 30)::int, listened_seconds
              FROM experiments_play) e
WHERE experiment_id IS NOT NULL
GROUP BY experiment_id, user_key, day
"""


class Migration(migrations.Migration):
    dependencies = [("experiments", "0009_plays")]

    operations = [
        migrations.RunSQL(migrations.RunSQL.noop, reverse_sql=REBUILD),
        migrations.DeleteModel(name="DailyUserRollup"),
    ]
