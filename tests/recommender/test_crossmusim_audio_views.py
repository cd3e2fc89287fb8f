"""Timbre views: the audio-side augmentation changes the sound, not the notes; training pools tracks from them."""

import numpy as np
import pytest
import torch

from recommender.crossmusim.audio_augment import TimbreAugmentConfig, augment_timbre
from recommender.crossmusim.config import TrainConfig
from recommender.crossmusim.data import TrainingData
from recommender.crossmusim.synthetic import make_synthetic_catalog
from recommender.crossmusim.train import _PatchSource, train_crossmusim

RATE = 16_000


def _notes(onsets_s=(0.25, 0.9, 1.6, 2.3), pitch_hz=440.0, seconds=3.0) -> np.ndarray:
    """Plucked-like notes: a tone at ``pitch_hz`` struck at each onset and decaying."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = np.zeros_like(t)
    for onset in onsets_s:
        after = t >= onset
        wave[after] += np.sin(2 * np.pi * pitch_hz * (t[after] - onset)) * np.exp(-4.0 * (t[after] - onset))
    return (0.2 * wave).astype(np.float32)


def _band_db(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    return 10 * np.log10(spectrum[(freqs >= low) & (freqs < high)].sum() + 1e-12)


def _onset_frames(audio: np.ndarray, count: int, hop: int = 400, apart: int = 8) -> list[int]:
    """The ``count`` frames (25 ms) where the energy rises most, at least ``apart`` frames from each other."""
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    energy = np.log10((frames**2).mean(axis=1) + 1e-9)
    rise = np.diff(energy, prepend=energy[0])
    chosen: list[int] = []
    for frame in np.argsort(rise)[::-1]:
        if all(abs(int(frame) - c) >= apart for c in chosen):
            chosen.append(int(frame))
        if len(chosen) == count:
            break
    return sorted(chosen)


def test_a_view_keeps_length_loudness_pitch_and_note_times_and_is_seeded():
    audio = _notes()
    views = [augment_timbre(audio, RATE, np.random.default_rng(seed)) for seed in range(8)]
    rms = np.sqrt(np.mean(audio**2))
    for view in views:
        assert view.shape == audio.shape and view.dtype == np.float32
        assert np.sqrt(np.mean(view**2)) == pytest.approx(rms, rel=0.02)
        spectrum = np.abs(np.fft.rfft(view))
        assert np.fft.rfftfreq(len(view), 1 / RATE)[np.argmax(spectrum)] == pytest.approx(440.0, abs=1.0)
        got, want = _onset_frames(view, 4), _onset_frames(audio, 4)
        assert all(abs(g - w) <= 1 for g, w in zip(got, want, strict=True)), (got, want)
    assert np.array_equal(views[0], augment_timbre(audio, RATE, np.random.default_rng(0)))
    assert not np.allclose(views[0], views[1])


def test_views_change_the_spectral_envelope():
    """Broadband noise through a view: the balance of low and high bands moves by several dB, one way or the other."""
    noise = np.random.default_rng(0).normal(size=3 * RATE).astype(np.float32) * 0.1
    no_room = TimbreAugmentConfig(room_probability=0.0, saturation_probability=0.0)
    tilt = _band_db(noise, 100, 500) - _band_db(noise, 2000, 6000)
    moves = [(_band_db(v, 100, 500) - _band_db(v, 2000, 6000)) - tilt for v in
             (augment_timbre(noise, RATE, np.random.default_rng(seed), no_room) for seed in range(10))]
    assert np.mean(np.abs(moves)) > 3.0
    assert min(moves) < 0 < max(moves)


def _data(views_per_track: int = 0, n: int = 64) -> TrainingData:
    syn = make_synthetic_catalog(n_tracks=n, seed=0)
    views = None
    if views_per_track:
        rng = np.random.default_rng(1)
        views = [[p + rng.normal(0, 0.5, size=p.shape).astype(np.float32) for _ in range(views_per_track)]
                 for p in syn.patches]
    return TrainingData(patches=syn.patches, caption_embeddings=syn.caption_embeddings,
                        caption_weights=syn.caption_weights, patch_views=views)


def test_the_patch_source_pools_views_at_their_rate_and_only_the_tracks_own():
    data = _data(views_per_track=2, n=40)
    data.patch_views[3] = []  # a track whose views failed: always its own patches
    source = _PatchSource(data, 0.5)
    rng = np.random.default_rng(0)
    batch = np.arange(40)
    picked = np.stack([source.rows(batch, rng) for _ in range(200)])
    own = picked == batch
    assert own[:, 3].all()
    assert np.delete(own, 3, axis=1).mean() == pytest.approx(0.5, abs=0.03)
    for track in (0, 17, 39):  # a view of a track is one of that track's own views
        assert set(picked[~own[:, track], track]) == set(source.views[track])
    always = _PatchSource(data, 1.0)
    assert not (always.rows(batch, rng) == batch)[np.arange(40) != 3].any()
    assert np.array_equal(_PatchSource(data, 0.0).rows(batch, rng), batch)


def test_training_without_views_or_at_probability_zero_is_the_run_it_was():
    torch.set_num_threads(1)
    config = TrainConfig(steps=15, batch_size=16, seed=2)
    plain = train_crossmusim(_data(0), config)
    config_zero = TrainConfig(steps=15, batch_size=16, seed=2)
    config_zero.augment.view_probability = 0.0
    assert train_crossmusim(_data(2), config_zero).losses == plain.losses
    config_views = TrainConfig(steps=15, batch_size=16, seed=2)
    config_views.augment.view_probability = 0.5
    with_views = train_crossmusim(_data(2), config_views)
    assert with_views.losses != plain.losses
    assert train_crossmusim(_data(2), config_views).losses == with_views.losses, "reproducible from the seed"


def test_timbral_view_channels_take_only_timbre_from_the_view():
    from recommender.crossmusim.factory import create_model_for_data
    from recommender.crossmusim.features import pool_many
    from recommender.crossmusim.musicnn.network import POOL_CHANNELS
    from recommender.crossmusim.timbre import timbre_channel_mask
    from recommender.crossmusim.train import _audio_views

    syn = make_synthetic_catalog(n_tracks=8, seed=0)
    dim = 2 * POOL_CHANNELS  # musicnn's patch features: mean_pool || max_pool of its 753 channels
    patches = [np.random.default_rng(i).normal(size=(4, dim)).astype(np.float32) for i in range(8)]
    data = TrainingData(patches=patches, patch_views=[[p + 5.0] for p in patches],
                        caption_embeddings=syn.caption_embeddings[:8], caption_weights=syn.caption_weights[:8])
    config = TrainConfig(steps=1, batch_size=8)
    config.augment.patch_window_min_frac, config.augment.feature_noise = 1.0, 0.0
    config.augment.view_probability = 1.0
    model = create_model_for_data(config.model, data)
    batch = np.arange(8)
    own = torch.as_tensor(pool_many(patches))
    for channels, from_view in (("all", np.ones(2 * dim, bool)), ("timbral", timbre_channel_mask(2 * dim).numpy())):
        config.augment.view_channels = channels
        pooled = _audio_views(data, model, config, batch, _PatchSource(data, 1.0), torch.Generator().manual_seed(0),
                              np.random.default_rng(0))
        assert torch.allclose(pooled[:, from_view], own[:, from_view] + 5.0, atol=1e-5)
        assert torch.allclose(pooled[:, ~from_view], own[:, ~from_view], atol=1e-5)
