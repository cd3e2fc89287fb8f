from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.services.embedding_runtime import backbone_extractor, set_torch_threads
from recommender.services.embedding_training import TrainingInputError, baseline_register, describe_metrics
from recommender.services.embeddings import DEFAULT_BACKBONE


class Command(BaseCommand):
    help = ("Register the audio-only arm: the pretrained backbone's pooled patch features as they are "
            "(mean and max over 3-s patches), with its retrieval metrics on the test split.")

    def add_arguments(self, parser):
        parser.add_argument("--threads", type=int,
                            help="torch CPU threads (default: torch's choice; 1 is faster on a busy shared machine)")
        parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
        parser.add_argument("--split", default="default", help="Named dataset split whose test part is scored")
        parser.add_argument("--name", help="Model name (default baseline-<backbone>)")

    def handle(self, *args, backbone, split, name, threads=None, **options):
        set_torch_threads(threads)
        try:
            model, data = baseline_register(
                backbone=backbone, split=split, name=name, extractor_factory=lambda: backbone_extractor(backbone),
                progress=lambda items: tqdm(items, desc=f"features {backbone}", unit="track", disable=None),
            )
        except TrainingInputError as error:
            raise CommandError(str(error)) from error
        for path, reason in data.extraction.failed:
            self.stderr.write(f"skipped {path}: {reason}")
        self.stdout.write(f"registered {model} (id {model.pk}, dim {model.dim}): {describe_metrics(model.metrics)}")
        self.stdout.write(f"next: manage.py index_embeddings {model.pk} --activate-arm baseline")
