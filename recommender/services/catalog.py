"""Catalog ingestion: audio files + an optional metadata table -> Track rows.

A metadata CSV/JSON row is matched to a file by its ``path`` (or ``file``) column,
relative to the catalog folder. Columns ``title``, ``artist``/``composer``,
``album``/``collection`` and ``document_text`` fill those fields; columns named
``label_<name>`` go to ``labels[<name>]``; everything else is kept in ``metadata``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from recommender.crossmusim.audio_io import AudioReadError, find_audio_files, probe_audio
from recommender.models import Track

FIELD_ALIASES = {
    "title": ("title",),
    "artist": ("artist", "composer"),
    "album": ("album", "collection"),
    "document_text": ("document_text",),
}
LABEL_PREFIX = "label_"


@dataclass
class IngestReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def seen(self) -> int:
        return self.created + self.updated + self.unchanged + len(self.failed)


def read_metadata_table(path: Path) -> dict[str, dict]:
    """Rows of a CSV or JSON (list of objects) metadata file keyed by their relative path."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(rows, dict):
            rows = [{"path": key, **value} for key, value in rows.items()]
    else:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    table = {}
    for number, row in enumerate(rows, start=1):
        key = row.get("path") or row.get("file")
        if not key:
            raise ValueError(f"{path}: row {number} has no 'path' column")
        table[str(Path(key))] = row
    return table


def _track_fields(row: dict) -> dict:
    fields: dict = {"metadata": {}, "labels": {}}
    used = {"path", "file"}
    for field_name, aliases in FIELD_ALIASES.items():
        for alias in aliases:
            if row.get(alias):
                fields[field_name] = str(row[alias])
                used.add(alias)
                break
    for key, value in row.items():
        if key in used or value in (None, ""):
            continue
        if key.startswith(LABEL_PREFIX):
            fields["labels"][key[len(LABEL_PREFIX):]] = value
        elif key == "labels" and isinstance(value, dict):
            fields["labels"].update(value)
        elif key not in FIELD_ALIASES:
            fields["metadata"][key] = value
    return fields


def ingest_catalog(
    root: Path,
    metadata_file: Path | None = None,
    progress: Callable[[Iterable], Iterable] = lambda items: items,
) -> IngestReport:
    """Create or update a Track per readable audio file; report and skip the others."""
    root = Path(root)
    metadata = read_metadata_table(metadata_file) if metadata_file else {}
    base = root if root.is_dir() else root.parent
    report = IngestReport()
    existing = {t.checksum: t for t in Track.objects.all()}
    for audio_path in progress(find_audio_files(root)):
        relative = str(audio_path.relative_to(base))
        try:
            info = probe_audio(audio_path)
        except (AudioReadError, OSError) as error:
            report.failed.append((relative, str(error)))
            continue
        fields = {"title": audio_path.stem, **_track_fields(metadata.get(relative, {}))}
        fields.update(
            duration_s=info.duration_s, sample_rate=info.sample_rate, channels=info.channels,
            audio_path=str(audio_path.resolve()),
        )
        track = existing.get(info.checksum)
        if track is None:
            existing[info.checksum] = Track.objects.create(checksum=info.checksum, **fields)
            report.created += 1
        elif any(getattr(track, key) != value for key, value in fields.items()):
            for key, value in fields.items():
                setattr(track, key, value)
            track.save()
            report.updated += 1
        else:
            report.unchanged += 1
    return report
