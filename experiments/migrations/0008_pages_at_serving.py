"""Serving writes the page; the outbox row that follows it is narrow (issue "Log pages, not items").

Forward: every recommendation row still waiting in the outbox or in the quarantine gives its
page to ``Page`` (``ON CONFLICT DO NOTHING``: a page that landed already keeps its row), then
the outbox and the quarantine lose their item arrays. The rows stay, so the worker still folds
those pages into the aggregates exactly once. The outbox's unique index on ``event_id`` no
longer covers recommendation rows (their request id is unique in ``Page`` already).
Reverse: the arrays come back, filled from ``Page`` for the recommendation rows.
"""

from django.db import migrations, models
from django.db.models import Q

RECOMMENDATION = 3

PAGES_FROM_ROWS = """
INSERT INTO experiments_page (request_id, experiment_id, variant_id, user_key, placement, created_at, track_ids, scores)
SELECT request_id, experiment_id, variant_id, user_key, 'track_page', created_at, track_ids, scores
FROM {table} WHERE kind = 3 AND track_ids IS NOT NULL
ON CONFLICT (request_id) DO NOTHING
"""

ROWS_FROM_PAGES = """
UPDATE {table} o SET track_ids = p.track_ids, scores = p.scores
FROM experiments_page p WHERE o.kind = 3 AND p.request_id = o.request_id
"""

TABLES = ("experiments_eventoutbox", "experiments_eventquarantine")


class Migration(migrations.Migration):
    dependencies = [("experiments", "0007_aggregates_fillfactor")]

    operations = [
        *[migrations.RunSQL(PAGES_FROM_ROWS.format(table=t), ROWS_FROM_PAGES.format(table=t)) for t in TABLES],
        *[migrations.RemoveField(model_name=model, name=name)
          for model in ("eventoutbox", "eventquarantine") for name in ("scores", "track_ids")],
        migrations.AlterField(model_name="eventoutbox", name="event_id", field=models.UUIDField()),
        migrations.AddConstraint(
            model_name="eventoutbox",
            constraint=models.UniqueConstraint(condition=~Q(kind=RECOMMENDATION), fields=["event_id"],
                                               name="one_outbox_row_per_event"),
        ),
    ]
