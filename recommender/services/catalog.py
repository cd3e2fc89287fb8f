"""Catalog ingestion: audio files + an optional metadata table -> Track rows.

A metadata CSV/JSON row is matched to a file by its ``path`` (or ``file``) column,
relative to the catalog folder. Columns ``title``, ``artist``/``composer``,
``album``/``collection`` and ``document_text`` fill those fields; columns named
``label_<name>`` go to ``labels[<name>]``, a JSON ``labels`` object goes to ``labels``
key by key; everything else is kept in ``metadata``.

Updates never lose data. A track that is already in the catalog only gets the fields its
metadata row provides; a re-run without a metadata file (or a row without a column)
keeps what the track has. ``labels`` and ``metadata`` are merged key by key, so a file
that names only ``label_style`` leaves the other labels alone. A column that is present
but empty for a row (an empty CSV cell, a JSON ``""`` or ``null``) also keeps what is
there: a CSV cannot tell "no value for this row" from "erase it", and a column that only
some rows fill must not erase the others. Clearing a value is an edit, not an ingest.

Only files inside the catalog folder are read: a path whose real location (symlinks
resolved) lies outside the resolved folder is refused and reported, never ingested.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recommender.crossmusim.audio_io import AudioReadError, find_audio_files, probe_audio
from recommender.models import Track

FIELD_ALIASES = {
    "title": ("title",),
    "artist": ("artist", "composer"),
    "album": ("album", "collection"),
    "document_text": ("document_text",),
}
LABEL_PREFIX = "label_"
PATH_KEYS = ("path", "file")
TEXT_KEYS = frozenset(alias for aliases in FIELD_ALIASES.values() for alias in aliases)
# Scalars a text field accepts (JSON numbers become text); lists, objects and booleans are mistakes.
TEXT_TYPES = (str, int, float)


class MetadataError(ValueError):
    """The metadata file cannot be used as it is; the message names the file, the row and the key.

    Raised before any track is written, so a bad file changes nothing in the catalog.
    """


@dataclass
class IngestReport:
    """What one ingest did.

    ``failed`` holds the audio files that were found but not ingested (unreadable, or
    refused because they lie outside the catalog folder), with the reason. ``unmatched``
    holds the metadata rows that filled no track (the path as the file wrote it, and why),
    so a typo or a stale metadata file is visible instead of silently ignored.
    """

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)

    @property
    def seen(self) -> int:
        return self.created + self.updated + self.unchanged + len(self.failed)


@dataclass(frozen=True)
class MetadataRow:
    """One validated metadata row; ``where`` says where it is in the file, for messages."""

    path: str
    where: str
    values: dict[str, Any]


# ---------------------------------------------------------------- reading and validating the metadata file

def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _json_rows(path: Path) -> Iterator[tuple[str, object]]:
    """(where, row) for a JSON list of objects, or an object mapping each path to an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as error:
        raise MetadataError(f"{path}: cannot read the metadata file ({error})") from error
    except json.JSONDecodeError as error:
        raise MetadataError(f"{path}: not valid JSON ({error})") from error
    expected = ("expected a list of objects (one per file, each with a 'path') "
                "or an object mapping each path to an object")
    if isinstance(data, list):
        yield from ((f"row {number}", row) for number, row in enumerate(data, start=1))
    elif isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(value, dict):
                raise MetadataError(
                    f"{path}: the top level is an object, read as path -> row, but the value of {key!r} is "
                    f"{_type_name(value)}, not an object; {expected}"
                )
            given = value.get("path", key)
            if given != key:
                raise MetadataError(f"{path}: entry {key!r} has a different 'path' inside ({given!r})")
            yield f"entry {key!r}", {**value, "path": key}
    else:
        raise MetadataError(f"{path}: the top level is {_type_name(data)}; {expected}")


def _csv_rows(path: Path) -> Iterator[tuple[str, object]]:
    """(where, row) for a CSV with a header row that has a ``path`` (or ``file``) column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames
            if not header:
                raise MetadataError(f"{path}: empty CSV, no header row with a 'path' column")
            if not any(key in header for key in PATH_KEYS):
                raise MetadataError(
                    f"{path}: no 'path' (or 'file') column; the header has: {', '.join(map(repr, header))}"
                )
            for row in reader:
                where = f"line {reader.line_num}"
                if None in row:  # DictReader's restkey: more cells than the header names
                    raise MetadataError(
                        f"{path}: {where} has {len(header) + len(row[None])} cells but the header has {len(header)}"
                    )
                yield where, row
    except (OSError, UnicodeDecodeError) as error:
        raise MetadataError(f"{path}: cannot read the metadata file ({error})") from error
    except csv.Error as error:
        raise MetadataError(f"{path}: not a valid CSV ({error})") from error


def _validate_row(path: Path, where: str, row: object) -> MetadataRow:
    """Check one row's shape so that bad data fails here, by row and key, not later in the database."""
    if not isinstance(row, dict):
        raise MetadataError(f"{path}: {where} is {_type_name(row)}, not an object with a 'path' key")
    key = next((k for k in PATH_KEYS if row.get(k) not in (None, "")), None)
    if key is None:
        keys = ", ".join(map(repr, row)) or "none"
        raise MetadataError(f"{path}: {where} has no 'path' (or 'file'); its keys are: {keys}")
    if not isinstance(row[key], str):
        raise MetadataError(f"{path}: {where}: {key!r} is {_type_name(row[key])}, must be a string")
    for name, value in row.items():
        if value in (None, ""):
            continue
        if name in TEXT_KEYS and (not isinstance(value, TEXT_TYPES) or isinstance(value, bool)):
            raise MetadataError(f"{path}: {where}: {name!r} is {_type_name(value)}, must be text")
        if name == "labels" and not isinstance(value, dict):
            raise MetadataError(f"{path}: {where}: 'labels' is {_type_name(value)}, must be an object name -> value")
    for field_name, aliases in FIELD_ALIASES.items():
        limit = Track._meta.get_field(field_name).max_length
        for alias in aliases:
            if limit and len(str(row.get(alias) or "")) > limit:
                raise MetadataError(
                    f"{path}: {where}: {alias!r} is {len(str(row[alias]))} characters, more than the {limit} allowed"
                )
    return MetadataRow(path=str(Path(row[key])), where=where, values=row)


def read_metadata_rows(path: Path) -> dict[str, MetadataRow]:
    """Validated rows of a CSV or JSON metadata file keyed by their normalised relative path.

    Raises :class:`MetadataError` naming the row and key for anything that is not a table of
    rows with a path each; two rows for one file are an error too, as one would silently win.
    """
    path = Path(path)
    rows = _json_rows(path) if path.suffix.lower() == ".json" else _csv_rows(path)
    table: dict[str, MetadataRow] = {}
    for where, row in rows:
        valid = _validate_row(path, where, row)
        if valid.path in table:
            raise MetadataError(f"{path}: {table[valid.path].where} and {where} both name {valid.path!r}")
        table[valid.path] = valid
    return table


def read_metadata_table(path: Path) -> dict[str, dict]:
    """Rows of a CSV or JSON metadata file keyed by their relative path (validated, see ``read_metadata_rows``)."""
    return {key: row.values for key, row in read_metadata_rows(path).items()}


# ---------------------------------------------------------------- row -> field updates

@dataclass
class FieldUpdates:
    """The values one metadata row provides; absent and empty columns are simply not here."""

    fields: dict[str, str] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


def _field_updates(row: dict) -> FieldUpdates:
    updates = FieldUpdates()
    used = set(PATH_KEYS)
    for field_name, aliases in FIELD_ALIASES.items():
        for alias in aliases:
            if row.get(alias) not in (None, ""):
                updates.fields[field_name] = str(row[alias])
                used.add(alias)
                break
    for key, value in row.items():
        if key in used or value in (None, ""):
            continue
        if key.startswith(LABEL_PREFIX):
            updates.labels[key[len(LABEL_PREFIX):]] = value
        elif key == "labels":
            updates.labels.update({name: v for name, v in value.items() if v not in (None, "")})
        elif key not in FIELD_ALIASES:
            updates.metadata[key] = value
    return updates


def _merged_values(track: Track | None, stem: str, updates: FieldUpdates) -> dict:
    """The metadata-derived field values after applying ``updates`` to ``track`` (or to a new track)."""
    if track is None:
        return {"title": stem, **updates.fields, "labels": updates.labels, "metadata": updates.metadata}
    return {
        **updates.fields,
        "labels": {**track.labels, **updates.labels},
        "metadata": {**track.metadata, **updates.metadata},
    }


# ---------------------------------------------------------------- the catalog folder

def _outside_reason(path: Path, base_real: Path) -> str | None:
    """Why ``path`` may not be read as part of the catalog, or None when it lies inside."""
    real = path.resolve()
    if real == base_real or not real.is_relative_to(base_real):
        return f"refused: resolves to {real}, outside the catalog folder {base_real}"
    return None


def ingest_catalog(
    root: Path,
    metadata_file: Path | None = None,
    progress: Callable[[Iterable], Iterable] = lambda items: items,
) -> IngestReport:
    """Create or update a Track per readable audio file inside the catalog; report and skip the others.

    The metadata file is read and validated first, so a malformed one raises
    :class:`MetadataError` before anything is written. ``root`` may be a single file; its
    folder is then the catalog folder.
    """
    root = Path(root)
    metadata = read_metadata_rows(metadata_file) if metadata_file else {}
    base = root if root.is_dir() else root.parent
    base_real = base.resolve()
    report = IngestReport()
    matched: set[str] = set()
    skipped: dict[str, str] = {}
    existing = {t.checksum: t for t in Track.objects.all()}
    for audio_path in progress(find_audio_files(root)):
        relative = str(audio_path.relative_to(base))
        if reason := _outside_reason(audio_path, base_real):
            report.failed.append((relative, reason))
            skipped[relative] = reason
            continue
        real_path = audio_path.resolve()  # read what was checked, not a link that could change
        try:
            info = probe_audio(real_path)
        except (AudioReadError, OSError) as error:
            report.failed.append((relative, str(error)))
            skipped[relative] = "not readable audio"
            continue
        row = metadata.get(relative)
        if row is not None:
            matched.add(relative)
        track = existing.get(info.checksum)
        values = _merged_values(track, audio_path.stem, _field_updates(row.values if row else {}))
        values.update(
            duration_s=info.duration_s, sample_rate=info.sample_rate, channels=info.channels,
            audio_path=str(real_path),
        )
        if track is None:
            existing[info.checksum] = Track.objects.create(checksum=info.checksum, **values)
            report.created += 1
        elif any(getattr(track, key) != value for key, value in values.items()):
            for key, value in values.items():
                setattr(track, key, value)
            track.save()
            report.updated += 1
        else:
            report.unchanged += 1
    for key, row in metadata.items():
        if key not in matched:
            report.unmatched.append((row.values.get("path") or row.values.get("file") or key,
                                     _unmatched_reason(key, skipped, base, base_real)))
    return report


def _unmatched_reason(key: str, skipped: dict[str, str], base: Path, base_real: Path) -> str:
    if key in skipped:
        return f"the file was skipped ({skipped[key]})"
    if outside := _outside_reason(base / key, base_real):
        return outside
    return "no such audio file in the catalog"
