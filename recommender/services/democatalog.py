"""Build the demo catalog and load it like any user catalog (ingest), then store its splits.

The work happens in ``recommender.democatalog`` (plain Python); this service adds what
needs the database: ``ingest_catalog`` for the files and metadata, removal of demo tracks
that a smaller rebuild no longer has, and the ``DatasetSplit`` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction

from recommender.crossmusim.audio_io import file_checksum
from recommender.democatalog import BuildConfig, BuildReport
from recommender.democatalog import build_demo_catalog as build_files
from recommender.democatalog.styles import STYLES, StyleSpec
from recommender.models import DatasetSplit, Track
from recommender.services.catalog import IngestReport, ingest_catalog


def default_demo_dir() -> Path:
    return Path(settings.CATALOG_DIR) / "demo"


def default_cache_dir() -> Path:
    """Parsed scores and rendered audio reused across builds, under VAR_DIR (a setting, from ABPLATFORM_VAR_DIR)."""
    return Path(settings.VAR_DIR) / "democache"


@dataclass
class DemoCatalogResult:
    build: BuildReport
    ingest: IngestReport
    tracks: list[Track]
    removed_tracks: int
    split_rows: int


def build_demo_catalog(
    *, size: int, seed: int = 0, out_dir: Path | None = None, cache_dir: Path | None = None, workers: int = 2,
    soundfont: str | None = None, styles: Sequence[StyleSpec] = STYLES, progress: bool = True,
    ingest_progress: Callable[[Iterable], Iterable] = lambda items: items,
) -> DemoCatalogResult:
    """Render the demo catalog's files (reusing what a previous build left) and load them.

    The SoundFont is ``soundfont``, else the SOUNDFONT setting, else Debian's (the plain-Python build reads no
    environment: the setting is handed to it).
    """
    config = BuildConfig(
        size=size, seed=seed, out_dir=Path(out_dir or default_demo_dir()),
        cache_dir=Path(cache_dir or default_cache_dir()), workers=workers, soundfont=soundfont,
        soundfont_fallback=settings.SOUNDFONT or None,
        styles=tuple(styles), progress=progress,
    )
    # The build forks worker processes; they never touch the inherited DB connection and leave
    # through os._exit, so the parent's connection (maybe inside a test transaction) stays intact.
    report = build_files(config)
    return load_demo_build(report, ingest_progress=ingest_progress)


def load_demo_build(report: BuildReport,
                    ingest_progress: Callable[[Iterable], Iterable] = lambda items: items) -> DemoCatalogResult:
    """Ingest a finished build and store its splits; tracks of an earlier, larger build are removed."""
    ingest = ingest_catalog(report.out_dir, report.metadata_file, progress=ingest_progress)
    paths = {str(report.out_dir / record.file): record.file for record in report.tracks}
    with transaction.atomic():
        under = Track.objects.filter(audio_path__startswith=f"{report.out_dir}/")
        _, deleted = under.exclude(audio_path__in=list(paths)).delete()
        removed = deleted.get(Track._meta.label, 0)  # not the cascaded split rows
        tracks = _one_track_per_file(list(under.filter(audio_path__in=list(paths))))
        by_file = {paths[track.audio_path]: track for track in tracks}
        DatasetSplit.objects.filter(name__in=list(report.splits), track__in=tracks).delete()
        rows = [
            DatasetSplit(name=name, track=by_file[file], part=part)
            for name, parts in report.splits.items()
            for file, part in parts.items()
            if file in by_file
        ]
        DatasetSplit.objects.bulk_create(rows, batch_size=1000)
    return DemoCatalogResult(build=report, ingest=ingest, tracks=sorted(tracks, key=lambda t: t.id),
                             removed_tracks=removed, split_rows=len(rows))


def _one_track_per_file(tracks: list[Track]) -> list[Track]:
    """A re-rendered file gets a new checksum and so a new Track: keep the one that matches the file."""
    by_path: dict[str, list[Track]] = {}
    for track in tracks:
        by_path.setdefault(track.audio_path, []).append(track)
    kept = []
    for path, group in by_path.items():
        if len(group) > 1:
            checksum = file_checksum(Path(path))
            current = [t for t in group if t.checksum == checksum] or group[-1:]
            Track.objects.filter(id__in=[t.id for t in group if t not in current]).delete()
            group = current[:1]
        kept.append(group[0])
    return kept
