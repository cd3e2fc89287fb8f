# The ApiKey model moved here from the experiments app; its table (experiments_apikey) and every key in it stay
# where they are: this migration only takes the model into this app's state.

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('experiments', '0004_hardening'),  # the table exists (with its scope column) from here on
    ]

    operations = [migrations.SeparateDatabaseAndState(database_operations=[], state_operations=[
        migrations.CreateModel(
            name='ApiKey',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100)),
                ('scope', models.CharField(choices=[('player', 'Player'), ('analyst', 'Analyst')], default='player', max_length=10)),
                ('prefix', models.CharField(max_length=16, unique=True)),
                ('key_hash', models.CharField(max_length=64)),
                ('active', models.BooleanField(default=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'verbose_name': 'API key',
                'db_table': 'experiments_apikey',
            },
        ),
    ])]
