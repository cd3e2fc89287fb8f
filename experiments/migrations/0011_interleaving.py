"""Interleaving experiments (issue 25): the experiment kind, each page's teams (on ``Page`` only: the outbox row
of a page is narrow since 0008), the team of clicks and plays (and of their outbox and quarantine rows), the
aggregates, and the team draft as a SQL function so that serving merges both rankers' lists inside its one statement.

``experiments_team_draft`` is ``experiments.team_draft.team_draft`` line by line (the tests check that
both give the same page for the same lists and coins); serving passes the coins, drawn in Python from
the request id.
"""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models

TEAM_DRAFT_SQL = r"""
CREATE OR REPLACE FUNCTION experiments_team_draft(a bigint[], b bigint[], a_first boolean[], k integer)
RETURNS TABLE (pos integer, team smallint, rank integer)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    on_page bigint[] := '{}';
    ia integer := 1;  -- next rank (1-based) to look at in a
    ib integer := 1;
    round_ integer := 1;
    na integer := coalesce(cardinality(a), 0);
    nb integer := coalesce(cardinality(b), 0);
    nc integer := greatest(coalesce(cardinality(a_first), 0), 1);
    added boolean;
    t smallint;
    turns smallint[];
BEGIN
    pos := 0;
    WHILE pos < k LOOP
        turns := CASE WHEN coalesce(a_first[least(round_, nc)], true) THEN '{1,2}'::smallint[]
                      ELSE '{2,1}'::smallint[] END;
        added := false;
        FOREACH t IN ARRAY turns LOOP
            EXIT WHEN pos >= k;
            IF t = 1 THEN
                WHILE ia <= na AND a[ia] = ANY(on_page) LOOP ia := ia + 1; END LOOP;
                IF ia <= na THEN
                    on_page := on_page || a[ia]; pos := pos + 1; team := 1; rank := ia; ia := ia + 1;
                    added := true; RETURN NEXT;
                END IF;
            ELSE
                WHILE ib <= nb AND b[ib] = ANY(on_page) LOOP ib := ib + 1; END LOOP;
                IF ib <= nb THEN
                    on_page := on_page || b[ib]; pos := pos + 1; team := 2; rank := ib; ib := ib + 1;
                    added := true; RETURN NEXT;
                END IF;
            END IF;
        END LOOP;
        EXIT WHEN NOT added;
        round_ := round_ + 1;
    END LOOP;
END
$$
"""
AGGREGATES = ("experiments_interleavinguserday", "experiments_interleavingpositionrollup")


class Migration(migrations.Migration):

    dependencies = [
        ('experiments', '0010_drop_dailyuserrollup'),
    ]

    operations = [
        migrations.AddField(
            model_name='click',
            name='team',
            field=models.SmallIntegerField(blank=True, help_text='Interleaving: the team credited (1 or 2)', null=True),
        ),
        migrations.AddField(
            model_name='play',
            name='team',
            field=models.SmallIntegerField(blank=True, help_text='Interleaving: the team credited (1 or 2)', null=True),
        ),
        migrations.AddField(
            model_name='eventoutbox',
            name='team',
            field=models.SmallIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='eventquarantine',
            name='team',
            field=models.SmallIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='experiment',
            name='kind',
            field=models.CharField(choices=[('ab', 'A/B test'), ('interleaving', 'interleaving (team draft)')], default='ab', help_text='A/B: each user sees one variant; interleaving: each user sees both, merged', max_length=20),
        ),
        migrations.AddField(
            model_name='page',
            name='teams',
            field=django.contrib.postgres.fields.ArrayField(base_field=models.SmallIntegerField(), blank=True, null=True, size=None),
        ),
        migrations.CreateModel(
            name='InterleavingPositionRollup',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('position', models.PositiveSmallIntegerField()),
                ('pages', models.BigIntegerField(default=0)),
                ('slots_b', models.BigIntegerField(default=0)),
                ('clicks_a', models.BigIntegerField(default=0)),
                ('clicks_b', models.BigIntegerField(default=0)),
                ('experiment', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='experiments.experiment')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('experiment', 'position'), name='one_interleaving_rollup_per_position')],
            },
        ),
        migrations.CreateModel(
            name='InterleavingUserDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('user_key', models.BigIntegerField()),
                ('day', models.DateField(help_text='Server receive day (UTC)')),
                ('pages', models.BigIntegerField(default=0)),
                ('a_first', models.BigIntegerField(default=0)),
                ('credits_a', models.BigIntegerField(default=0)),
                ('credits_b', models.BigIntegerField(default=0)),
                ('listens_a', models.BigIntegerField(default=0)),
                ('listens_b', models.BigIntegerField(default=0)),
                ('experiment', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='experiments.experiment')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('experiment', 'user_key', 'day'), name='one_interleaving_row_per_user_day')],
            },
        ),
        migrations.RunSQL(TEAM_DRAFT_SQL,
                          reverse_sql="DROP FUNCTION IF EXISTS experiments_team_draft(bigint[], bigint[], boolean[], integer)"),
        migrations.RunSQL([f"ALTER TABLE {table} SET (fillfactor = 70)" for table in AGGREGATES],
                          reverse_sql=[f"ALTER TABLE {table} RESET (fillfactor)" for table in AGGREGATES]),
    ]
