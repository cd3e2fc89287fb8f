"""``manage.py create_placement KEY [--name N] [--default-model MODEL]``: a new placement for the API's parameter."""

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from experiments.services import ExperimentError, placement_create, resolve_embedding_model


class Command(BaseCommand):
    help = "Create a placement (e.g. autoplay) with its own default model and layer of 10,000 buckets."

    def add_arguments(self, parser):
        parser.add_argument("key", help="letters, digits, '_' or '-'; the API's placement parameter")
        parser.add_argument("--name", default="")
        parser.add_argument("--default-model", default="",
                            help="model id, arm or name[:version] (default: the model active for the baseline arm)")

    def handle(self, *args, key, name, default_model, **options):
        try:
            model = resolve_embedding_model(default_model) if default_model else None
            placement = placement_create(key=key, name=name, default_model=model)
        except (ExperimentError, IntegrityError) as error:
            raise CommandError(f"cannot create placement {key!r}: {error}") from error
        self.stdout.write(f"placement {placement.key}: default model {model or 'the baseline arm'}")
