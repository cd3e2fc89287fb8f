from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.models import EmbeddingModel
from recommender.selectors import ModelNotFoundError, embedding_model_get, tracks_for_ids
from recommender.services.embedding_runtime import backbone_extractor, set_torch_threads
from recommender.services.embeddings import (
    DEFAULT_BACKBONE,
    ActivationError,
    catalog_index,
    embedding_model_activate,
)


class Command(BaseCommand):
    help = ("Embed the whole catalog with MODEL (id or name[:version]), write the vectors to pgvector, "
            "build its HNSW index (cosine) and optionally activate it for an arm.")

    def add_arguments(self, parser):
        parser.add_argument("--threads", type=int,
                            help="torch CPU threads (default: torch's choice; 1 is faster on a busy shared machine)")
        parser.add_argument("model", help="Embedding model id or name[:version] (latest version by default)")
        parser.add_argument("--activate-arm", choices=EmbeddingModel.Kind.values)

    def handle(self, *args, model, activate_arm, threads=None, **options):
        set_torch_threads(threads)
        try:
            embedding_model = embedding_model_get(model)
        except ModelNotFoundError as error:
            raise CommandError(str(error)) from error
        backbone = embedding_model.config.get("backbone", DEFAULT_BACKBONE)
        tracks = list(tracks_for_ids())
        try:
            report = catalog_index(
                model=embedding_model, tracks=tracks, extractor_factory=lambda: backbone_extractor(backbone),
                progress=lambda items: tqdm(items, desc=f"features {backbone}", unit="track", disable=None),
            )
        except (ValueError, RuntimeError) as error:
            raise CommandError(f"{embedding_model}: {error}") from error
        for name, reason in report.skipped:
            self.stderr.write(f"skipped {name}: {reason}")
        if report.index_error:
            self.stderr.write(f"no HNSW index for {embedding_model} ({report.index_error}); KNN is exact")
        self.stdout.write(
            f"{embedding_model} (id {embedding_model.pk}): {report.written} vectors of dim {embedding_model.dim} "
            f"(features {report.feature_seconds:.2f} s, embed {report.embed_seconds:.2f} s, "
            f"write {report.write_seconds:.2f} s, HNSW {report.index_seconds:.2f} s), {len(report.skipped)} skipped"
        )
        if activate_arm:
            try:
                embedding_model_activate(model=embedding_model, arm=activate_arm)
            except ActivationError as error:
                raise CommandError(str(error)) from error
            self.stdout.write(f"{embedding_model} now serves the {activate_arm} arm")
