"""``manage.py create_api_key NAME [--scope player|analyst]``: create an API key and print it once.

``player`` keys (the default) ship inside client apps and reach only the player API; an
``analyst`` key also reads ``GET /api/v1/experiments/<id>/results`` and belongs to a
person or a reporting job, never to an app.
"""

from django.core.management.base import BaseCommand, CommandError

from abplatform.apikeys.models import ApiKey
from abplatform.apikeys.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key (player app by default); the key is printed once and only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Name of the player app or analyst")
        parser.add_argument("--scope", choices=ApiKey.Scope.values, default=ApiKey.Scope.PLAYER,
                            help="player: recommendations, events, tracks, search (default); "
                                 "analyst: those and experiment results")

    def handle(self, *args, name: str, scope: str, **options):
        name = name.strip()
        if not name or len(name) > 100:
            raise CommandError("NAME must be 1-100 characters")
        api_key, key = api_key_create(name=name, scope=scope)
        self.stderr.write(f"API key {api_key.name!r} (scope {api_key.scope}, prefix {api_key.prefix}); "
                          "store it now, it is not shown again:")
        self.stdout.write(key)
