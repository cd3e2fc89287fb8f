"""extract_audio_features with the real musicnn port: cached per track, resumable, bad files named."""

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from recommender.crossmusim.audio_io import load_mono
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


def test_timbre_views_are_real_musicnn_features_of_other_sounds_cached_and_seeded(audio_catalog):
    from recommender.services.embedding_runtime import backbone_extractor
    from recommender.services.timbre_views import timbre_view_cache, timbre_view_features

    tracks = audio_catalog
    views, report = timbre_view_features(tracks=tracks, views=2, backbone="MTT_musicnn",
                                         extractor_factory=lambda: backbone_extractor("MTT_musicnn"))
    assert report.extracted == 6 and [path for path, _ in report.failed] == [tracks[3].audio_path] * 2
    assert [len(v) for v in views] == [2, 2, 2, 0]  # the unreadable file: no view, named in the report
    own = backbone_extractor("MTT_musicnn").patch_features(load_mono(tracks[0].audio_path, target_rate=16000)[0])
    first, second = views[0]
    assert first.shape == own.shape == (2, 1506)
    assert not np.allclose(first, own) and not np.allclose(first, second)  # another sound, and two different ones
    again, report = timbre_view_features(tracks=tracks[:3], views=2, backbone="MTT_musicnn",
                                         extractor_factory=lambda: backbone_extractor("MTT_musicnn"))
    assert report.extracted == 0 and report.cached == 6
    np.testing.assert_array_equal(again[0][0], first)
    # seeded by the audio and the view's index: recomputed from scratch, the same view
    timbre_view_cache("MTT_musicnn").path_for(f"{tracks[0].checksum}-0").unlink()
    redone, report = timbre_view_features(tracks=tracks[:1], views=1, backbone="MTT_musicnn",
                                          extractor_factory=lambda: backbone_extractor("MTT_musicnn"))
    assert report.extracted == 1
    np.testing.assert_allclose(redone[0][0], first, atol=1e-5)


def test_the_command_caches_timbre_views_of_the_train_part_and_refuses_a_bad_count(audio_catalog, capsys):
    from recommender.models import DatasetSplit
    from recommender.services.timbre_views import timbre_view_cache

    for track, part in zip(audio_catalog, ("train", "train", "test", "train"), strict=True):
        DatasetSplit.objects.create(name="default", track=track, part=part)
    call_command("extract_audio_features", "--timbre-views", "1")
    captured = capsys.readouterr()
    assert "timbre views: 2 extracted" in captured.out and "1 skipped" in captured.out
    assert "broken.wav" in captured.err
    cache = timbre_view_cache("MTT_musicnn")
    assert [cache.has(f"{t.checksum}-0") for t in audio_catalog[:3]] == [True, True, False]  # the test track: none
    call_command("extract_audio_features", "--timbre-views", "2", "--tracks", str(audio_catalog[0].pk))
    out = capsys.readouterr().out
    assert "timbre views: 1 extracted (" in out and "1 already cached, 0 skipped, 2 per track of 1" in out
    call_command("extract_audio_features", "--timbre-views", "auto")  # as many as training uses: none by default
    assert "timbre views" not in capsys.readouterr().out
    with pytest.raises(CommandError, match="takes a count or 'auto'"):
        call_command("extract_audio_features", "--timbre-views", "many")
