"""Reading audio files of a catalog: format checks, checksums and clear errors."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".mp3"})


class AudioReadError(ValueError):
    """The file is not audio we can read; the message names the file and the reason."""


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    duration_s: float
    sample_rate: int
    channels: int
    frames: int
    checksum: str


def file_checksum(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def check_decodes(path: Path):
    """Prove the file decodes (header, then its first second) and return soundfile's info.

    Reading the header alone accepts truncated files, so the first second is decoded too.
    Shared by ingestion and the listening room's audio view, which must not pay for a checksum.
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise AudioReadError(f"{path}: empty file")
    try:
        info = soundfile.info(str(path))
        with soundfile.SoundFile(str(path)) as handle:
            handle.read(frames=min(info.samplerate, max(info.frames, 1)), dtype="float32")
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as error:
        raise AudioReadError(f"{path}: not readable audio ({error})") from error
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioReadError(f"{path}: no audio frames")
    return info


def probe_audio(path: Path) -> AudioInfo:
    """Open the file fully enough to prove it decodes (``check_decodes``), and describe it."""
    path = Path(path)
    info = check_decodes(path)
    return AudioInfo(
        path=path,
        duration_s=info.frames / info.samplerate,
        sample_rate=info.samplerate,
        channels=info.channels,
        frames=info.frames,
        checksum=file_checksum(path),
    )


def load_mono(path: Path, target_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Decode to float32 mono, resampled (polyphase) to ``target_rate`` when given."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise AudioReadError(f"{path}: not readable audio ({error})") from error
    mono = audio.mean(axis=1)
    if target_rate and rate != target_rate:
        from math import gcd

        from scipy.signal import resample_poly

        divisor = gcd(rate, target_rate)
        mono = resample_poly(mono, target_rate // divisor, rate // divisor).astype(np.float32)
        rate = target_rate
    return mono, rate


def find_audio_files(root: Path) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
