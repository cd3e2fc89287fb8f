# ApiKey moved to abplatform.apikeys with its table: drop it from this app's state only, never the table.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('experiments', '0004_hardening'),
        ('apikeys', '0001_initial'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(database_operations=[], state_operations=[
            migrations.DeleteModel(name='ApiKey'),
        ]),
    ]
