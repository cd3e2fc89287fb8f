from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.services.catalog import ingest_catalog


class Command(BaseCommand):
    help = "Load audio files (wav/flac/ogg/mp3) and their metadata into the catalog; re-runs are idempotent."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="Folder (searched recursively) or one audio file")
        parser.add_argument("--metadata", type=Path, help="CSV or JSON with a 'path' column relative to PATH")

    def handle(self, *args, path, metadata, **options):
        path, metadata = Path(path), Path(metadata) if metadata else None
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        if metadata is not None and not metadata.exists():
            raise CommandError(f"metadata file {metadata} does not exist")
        try:
            report = ingest_catalog(
                path, metadata,
                progress=lambda items: tqdm(items, desc="ingest", unit="file", disable=None),
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        for name, reason in report.failed:
            self.stderr.write(f"skipped {name}: {reason}")
        self.stdout.write(
            f"ingested {report.seen} files: {report.created} new, {report.updated} updated, "
            f"{report.unchanged} unchanged, {len(report.failed)} skipped"
        )
