"""Drop the (experiment, variant) indexes of Assignment and UserAggregate.

Nothing reads either table by arm through them (the analysis reads an experiment's aggregates whole and groups by
arm; assignments are written, not queried), yet every page of a user new to an experiment wrote an entry in each:
about 100 bytes of WAL and two index inserts per first visit (issue "Log pages, not items").
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('experiments', '0014_variant_moments'),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='assignment',
            name='assignment_exp_variant',
        ),
        migrations.RemoveIndex(
            model_name='useraggregate',
            name='useragg_exp_variant',
        ),
    ]
