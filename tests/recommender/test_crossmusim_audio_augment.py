"""The audio-side timbre augmentation (timbre views) changes the sound, not the notes."""

import numpy as np
import pytest

from recommender.crossmusim.audio_augment import TimbreAugmentConfig, augment_timbre

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
