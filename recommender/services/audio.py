"""A track's audio file for the listening room: found by track id, checked, typed, and cut to a byte range.

The request never names a path: the view passes a track id and this module reads the file the
catalog recorded for it (``Track.audio_path``). Django's ``FileResponse`` does not answer Range
requests (Django ticket #22479), and whitenoise does only for the static files it collected at
start-up, so the one byte range Chromium asks for when it seeks is parsed here (RFC 9110 §14):
small, pure and unit-tested (tests/recommender/test_listening_audio.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.utils.http import http_date, parse_http_date_safe

from recommender.models import Track

# By extension: the catalog accepts exactly these (recommender.crossmusim.audio_io.AUDIO_EXTENSIONS).
CONTENT_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}
# Staff only and private: a browser may keep it an hour; the ETag revalidates it after that.
CACHE_CONTROL = "private, max-age=3600"
CHUNK_BYTES = 64 * 1024


# --- byte ranges --------------------------------------------------------------------------------------------------

class RangeNotSatisfiableError(ValueError):
    """The Range header is well formed but starts past the end of the file: the answer is 416."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


_RANGE_SPEC = re.compile(r"^\s*([0-9]*)\s*-\s*([0-9]*)\s*$", re.ASCII)


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The byte range a ``Range`` header asks of a ``size``-byte file, or None to send the whole file.

    None (a 200 with the whole file, which RFC 9110 allows for any Range it does not honour) for no
    header, another unit, a malformed spec, first > last, or several ranges (browsers ask for one;
    multipart/byteranges is not worth its code). ``bytes=A-B`` is clamped to the file, ``bytes=A-``
    runs to the end, ``bytes=-N`` is the last N bytes. Raises ``RangeNotSatisfiableError`` when the
    range starts at or past the end (or is ``-0``, or the file is empty): the answer is 416.
    """
    if not header:
        return None
    unit, equals, specs = header.strip().partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    parts = [part for part in specs.split(",") if part.strip()]
    if len(parts) != 1:
        return None
    match = _RANGE_SPEC.match(parts[0])
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # suffix: the last N bytes
        suffix = int(match[2])
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiableError(f"bytes=-{suffix} of a {size}-byte file")
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(match[1])
    if match[2] and int(match[2]) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiableError(f"range starts at byte {start} of a {size}-byte file")
    return ByteRange(start, min(int(match[2]), size - 1) if match[2] else size - 1)


def if_range_allows(if_range: str | None, etag: str, last_modified: int) -> bool:
    """RFC 9110 §13.1.5: honour the Range only if the client's copy is still this file (strong ETag or exact date);
    otherwise the whole new file is sent, so a client never splices bytes of two versions."""
    if not if_range:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value == etag  # a weak validator never matches in If-Range
    return parse_http_date_safe(value) == last_modified


# --- the file behind a track ------------------------------------------------------------------------------------

class AudioUnavailableError(LookupError):
    """The track's audio cannot be played; ``reason`` says why in words a staff user can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AudioFile:
    track_id: int
    path: Path
    size: int
    mtime: int  # whole seconds, as Last-Modified carries them
    content_type: str
    etag: str

    @property
    def last_modified(self) -> str:
        return http_date(self.mtime)

    @property
    def download_name(self) -> str:
        return f"track-{self.track_id}{self.path.suffix.lower()}"

    def read(self, byte_range: ByteRange | None = None) -> Iterator[bytes]:
        """The file's bytes (or the range's) in chunks; the file is closed when the response closes the generator."""
        start, remaining = (byte_range.start, byte_range.length) if byte_range else (0, self.size)
        with open(self.path, "rb") as handle:
            handle.seek(start)
            while remaining > 0:
                chunk = handle.read(min(CHUNK_BYTES, remaining))
                if not chunk:  # the file shrank under us: stop rather than promise bytes we do not have
                    return
                remaining -= len(chunk)
                yield chunk


@lru_cache(maxsize=4096)
def _decode_problem(path: str, size: int, mtime_ns: int) -> str | None:
    """Why the file does not decode, or None; cached per (path, size, mtime): a seek asks for the file many times.

    soundfile is imported here, not with the URLconf, so web workers that never serve audio do not load libsndfile."""
    from recommender.crossmusim.audio_io import AudioReadError, check_decodes

    try:
        check_decodes(Path(path))
    except AudioReadError as error:
        return str(error).removeprefix(f"{path}: ")
    return None


def audio_file_for(track: Track) -> AudioFile:
    """The checked file of ``track``; ``AudioUnavailableError`` with the reason when it is missing or corrupt."""
    name = f"track {track.pk} ({track.title})"
    if not track.audio_path:
        raise AudioUnavailableError(f"{name} has no audio file in the catalog")
    path = Path(track.audio_path)
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None:
        raise AudioUnavailableError(f"{name}: {path.suffix or 'no extension'} is not a served format "
                                    f"({', '.join(sorted(CONTENT_TYPES))})")
    try:
        stat = path.stat()
    except OSError:
        raise AudioUnavailableError(f"{name}: the audio file {path.name} is missing on the server") from None
    if not path.is_file():
        raise AudioUnavailableError(f"{name}: {path.name} is not a regular file")
    problem = _decode_problem(str(path), stat.st_size, stat.st_mtime_ns)
    if problem is not None:
        raise AudioUnavailableError(f"{name}: the audio file {path.name} is corrupt ({problem})")
    return AudioFile(track_id=track.pk, path=path, size=stat.st_size, mtime=int(stat.st_mtime),
                     content_type=content_type, etag=f'"{track.pk:x}-{stat.st_size:x}-{stat.st_mtime_ns:x}"')


def audio_file(track_id: int) -> AudioFile:
    track = Track.objects.filter(pk=track_id).only("id", "title", "audio_path").first()
    if track is None:
        raise AudioUnavailableError(f"no track {track_id} in the catalog")
    return audio_file_for(track)


def audio_problem(track: Track) -> str | None:
    """None when the track can be played, else the reason (what the page shows instead of a play button)."""
    try:
        audio_file_for(track)
    except AudioUnavailableError as error:
        return error.reason
    return None
