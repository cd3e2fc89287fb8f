"""``manage.py create_api_key NAME``: create a player app's API key and print it once."""

from django.core.management.base import BaseCommand, CommandError

from experiments.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a player app; the key is printed once and only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Name of the player app")

    def handle(self, *args, name: str, **options):
        name = name.strip()
        if not name or len(name) > 100:
            raise CommandError("NAME must be 1-100 characters")
        api_key, key = api_key_create(name=name)
        self.stderr.write(f"API key {api_key.name!r} (prefix {api_key.prefix}); store it now, it is not shown again:")
        self.stdout.write(key)
