"""extract_audio_features with the real musicnn port: cached per track, resumable, bad files named."""

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from recommender.models import Track
from recommender.services.embeddings import feature_cache
from tests.recommender.embeddings_fixtures import one_torch_thread, tone_track  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture
def audio_catalog(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    tracks = [tone_track(tmp_path / "audio", i, seconds=7.0) for i in range(3)]
    broken = tmp_path / "audio" / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav file")
    tracks.append(Track.objects.create(title="broken", duration_s=1, sample_rate=16000, checksum="b" * 64,
                                       audio_path=str(broken)))
    return tracks


def test_features_are_cached_per_track_and_a_rerun_resumes(audio_catalog, capsys):
    call_command("extract_audio_features")
    captured = capsys.readouterr()
    assert "3 extracted" in captured.out and "1 skipped" in captured.out
    assert "broken.wav" in captured.err
    cache = feature_cache("MTT_musicnn")
    first = cache.load(audio_catalog[0].checksum)
    assert first.shape == (2, 1506) and first.dtype == np.float32 and np.isfinite(first).all()
    assert not np.allclose(first, cache.load(audio_catalog[1].checksum))

    cache.path_for(audio_catalog[2].checksum).unlink()  # as if the first run had stopped before this track
    call_command("extract_audio_features")
    out = capsys.readouterr().out
    assert "1 extracted" in out and "2 already cached" in out
    np.testing.assert_array_equal(cache.load(audio_catalog[0].checksum), first)


def test_only_the_named_tracks_and_unknown_ids_are_refused(audio_catalog, capsys):
    call_command("extract_audio_features", "--tracks", str(audio_catalog[1].pk))
    assert "1 extracted" in capsys.readouterr().out
    assert feature_cache("MTT_musicnn").has(audio_catalog[1].checksum)
    assert not feature_cache("MTT_musicnn").has(audio_catalog[0].checksum)
    with pytest.raises(CommandError, match="no track with id 999999"):
        call_command("extract_audio_features", "--tracks", "999999")


def test_an_unknown_backbone_is_a_command_error(audio_catalog):
    with pytest.raises(CommandError, match="unknown musicnn model 'NOPE'"):
        call_command("extract_audio_features", "--model", "NOPE")
