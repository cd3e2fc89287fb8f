"""Small synthetic catalogs for the embedding tests: rows only, or real wav files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile

from recommender.models import Track


def synthetic_tracks(count: int, prefix: str = "t") -> list[Track]:
    """``count`` Track rows with unique checksums and no audio behind them."""
    return Track.objects.bulk_create(
        Track(
            title=f"{prefix}{i}", artist=f"composer {i % 7}", album=f"album {i % 5}", duration_s=20.0,
            sample_rate=16000, checksum=hashlib.sha256(f"{prefix}{i}".encode()).hexdigest(), audio_path="none",
            labels={"style": f"style{i % 4}", "ensemble": f"ens{i % 3}"},
        )
        for i in range(count)
    )


def tone_track(folder: Path, index: int, seconds: float = 4.0, rate: int = 16000) -> Track:
    """A Track backed by a real wav file: a tone whose pitch and pulse depend on ``index``."""
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    freq = 110.0 * 2 ** ((index % 12) / 12) * (1 + index % 3)
    pulse = 0.5 + 0.5 * (np.sin(2 * np.pi * (1 + index % 4) * t) > 0)
    wave = (0.3 * np.sin(2 * np.pi * freq * t) * pulse).astype(np.float32)
    path = folder / f"tone_{index:03d}.wav"
    soundfile.write(str(path), wave, rate)
    checksum = hashlib.sha256(path.read_bytes()).hexdigest()
    return Track.objects.create(
        title=f"tone {index}", artist="synth", album="tones", duration_s=seconds, sample_rate=rate,
        checksum=checksum, audio_path=str(path), labels={"style": f"style{index % 4}", "ensemble": f"ens{index % 3}"},
    )


def staff_http_client(live_server_url: str):
    """An httpx client carrying the session cookie of a fresh staff user (real HTTP, real session)."""
    import httpx
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_user("staff", password="x" * 12, is_staff=True)
    django_client = Client()
    django_client.force_login(user)
    cookies = {"sessionid": django_client.cookies["sessionid"].value}
    return httpx.Client(base_url=live_server_url, cookies=cookies, timeout=60)


STYLES = ("reel", "jig", "hornpipe", "waltz")
ENSEMBLES = ("fiddle", "piano", "flute")


def described_catalog(count: int, backbone: str, dim: int = 24, patches: int = 6, seed: int = 0) -> list[Track]:
    """Tracks with cached synthetic patch features, a default split and kept descriptions.

    Features: a strong ensemble (timbre) direction plus a weaker style direction plus noise, so
    audio-only similarity is timbre-led and the descriptions (which name the style) carry the signal.
    """
    from recommender.models import DatasetSplit, Description
    from recommender.services.embeddings import feature_cache

    rng = np.random.default_rng(seed)
    style_dirs = rng.normal(size=(len(STYLES), dim))
    ensemble_dirs = 3 * rng.normal(size=(len(ENSEMBLES), dim))
    tracks = synthetic_tracks(count, prefix=f"described{seed}-")
    cache = feature_cache(backbone)
    splits, descriptions = [], []
    for i, track in enumerate(tracks):
        style, ensemble = STYLES[i % len(STYLES)], ENSEMBLES[(i // len(STYLES)) % len(ENSEMBLES)]
        track.labels = {"style": style, "ensemble": ensemble, "mode": "major" if i % 2 else "minor",
                        "work_id": f"w{i}"}
        base = style_dirs[STYLES.index(style)] + ensemble_dirs[ENSEMBLES.index(ensemble)]
        cache.save(track.checksum, base + 0.5 * rng.normal(size=(patches, dim)))
        part = ("train",) * 6 + ("val", "test", "test", "test")
        splits.append(DatasetSplit(name="default", track=track, part=part[i % len(part)]))
        for n, text in enumerate((f"a lively {style} tune", f"traditional {style} dance music",
                                  f"a {style} played on {ensemble}")):
            descriptions.append(Description(
                track=track, text=text, source="metadata", origin=f"template:{n}", perspective="style",
                score=0.9, kept=True, text_hash=hashlib.sha256(text.encode()).hexdigest()))
    Track.objects.bulk_update(tracks, ["labels"])
    DatasetSplit.objects.bulk_create(splits)
    Description.objects.bulk_create(descriptions)
    return tracks


@pytest.fixture
def one_torch_thread():
    """torch on one thread: on a shared 2-core machine two spinning threads per process run several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def persistent_features(settings, tmp_path):
    """Models and checkpoints in this test's tmp_path, musicnn features in var/test-embeddings/ (kept between
    runs by audio checksum): only the first run on a machine pays for the extraction."""
    shared = Path(settings.VAR_DIR) / "test-embeddings" / "features"
    shared.mkdir(parents=True, exist_ok=True)
    settings.MODELS_DIR = tmp_path
    (tmp_path / "features").symlink_to(shared, target_is_directory=True)
