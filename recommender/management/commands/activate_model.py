from django.core.management.base import BaseCommand, CommandError

from recommender.models import EmbeddingModel
from recommender.selectors import ModelNotFoundError, active_model_for_arm, embedding_model_get
from recommender.services.embeddings import ActivationError, embedding_model_activate


class Command(BaseCommand):
    help = "Make MODEL (id or name[:version]) the one model serving an arm; the previous one is released atomically."

    def add_arguments(self, parser):
        parser.add_argument("model", help="Embedding model id or name[:version]")
        parser.add_argument("--arm", required=True, choices=EmbeddingModel.Kind.values)

    def handle(self, *args, model, arm, **options):
        try:
            embedding_model = embedding_model_get(model)
            previous = active_model_for_arm(arm)
            embedding_model_activate(model=embedding_model, arm=arm)
        except (ModelNotFoundError, ActivationError) as error:
            raise CommandError(str(error)) from error
        replaced = f" (replacing {previous})" if previous and previous.pk != embedding_model.pk else ""
        self.stdout.write(f"{embedding_model} now serves the {arm} arm{replaced}")
