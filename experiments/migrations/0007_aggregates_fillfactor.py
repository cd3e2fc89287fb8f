"""Room on each page of the aggregate tables for updated rows (fillfactor 70).

Every landed page updates its user's ``UserAggregate`` and ``DailyUserRollup`` rows (and the
per-position and daily-moment rows). With full pages (fillfactor 100) an update's new row
version usually lands on another page, and every index of the table gets a new entry: WAL
and index growth on each page served. With free room on the page PostgreSQL makes it a HOT
update (same page, no index entry). Applies to pages written from now on (a ``VACUUM FULL``
would rewrite the existing ones).
"""

from django.db import migrations

TABLES = ("experiments_useraggregate", "experiments_dailyuserrollup", "experiments_positionrollup",
          "experiments_variantdailymoments")


class Migration(migrations.Migration):

    dependencies = [
        ('experiments', '0006_pages'),
    ]

    operations = [
        migrations.RunSQL(
            [f"ALTER TABLE {table} SET (fillfactor = 70)" for table in TABLES],
            reverse_sql=[f"ALTER TABLE {table} RESET (fillfactor)" for table in TABLES],
        ),
    ]
