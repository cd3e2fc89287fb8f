from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from recommender.services.catalog import IngestReport, MetadataError, ingest_catalog

UNMATCHED_SHOWN = 5  # enough to spot a pattern (wrong folder, typo) without flooding the terminal


class Command(BaseCommand):
    help = (
        "Load audio files (wav/flac/ogg/mp3) and their metadata into the catalog; re-runs are idempotent and "
        "only change the fields the metadata file provides. Files outside the folder (symlinks) are refused."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="Folder (searched recursively) or one audio file")
        parser.add_argument("--metadata", type=Path, help="CSV or JSON with a 'path' column relative to PATH")

    def handle(self, *args, path, metadata, **options):
        path, metadata = Path(path), Path(metadata) if metadata else None
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        if metadata is not None and not metadata.is_file():
            raise CommandError(f"metadata file {metadata} does not exist or is not a file")
        try:
            report = ingest_catalog(
                path, metadata,
                progress=lambda items: tqdm(items, desc="ingest", unit="file", disable=None),
            )
        except MetadataError as error:
            raise CommandError(f"invalid metadata, nothing was ingested: {error}") from error
        for name, reason in report.failed:
            self.stderr.write(f"skipped {name}: {reason}")
        if report.unmatched:
            self.stderr.write(self._unmatched_message(report))
        self.stdout.write(
            f"ingested {report.seen} files: {report.created} new, {report.updated} updated, "
            f"{report.unchanged} unchanged, {len(report.failed)} skipped"
            + (f"; {len(report.unmatched)} metadata rows unmatched" if metadata is not None else "")
        )

    @staticmethod
    def _unmatched_message(report: IngestReport) -> str:
        shown = "; ".join(f"{name} ({reason})" for name, reason in report.unmatched[:UNMATCHED_SHOWN])
        more = len(report.unmatched) - UNMATCHED_SHOWN
        return (f"{len(report.unmatched)} metadata rows matched no ingested file: {shown}"
                + (f"; and {more} more" if more > 0 else ""))
