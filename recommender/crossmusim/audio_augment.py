"""Audio-side timbre augmentation: change how a recording sounds, not what it plays.

The projection learns from cached musicnn features; an augmentation that must change the
*timbre* the backbone hears has to act on the waveform before the backbone. Each transform
here keeps the notes, their timing and the harmony (the style) and changes the sound:

- a random smooth spectral envelope (a tilt plus a few wide bumps and dips over log-frequency):
  another instrument's formants and brightness;
- a synthetic room (exponentially decaying noise): softer attacks and longer decays, the way a
  plucked or struck note differs from a bowed or blown one;
- soft saturation: more or fewer upper harmonics.

Plain numpy/scipy; the random generator is the caller's, so a view is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TimbreAugmentConfig:
    tilt_db_per_octave: float = 4.0  # uniform in +/- this
    bumps: int = 3  # smooth peaks/dips of the spectral envelope
    bump_db: float = 12.0  # each bump's gain uniform in +/- this
    bump_hz: tuple[float, float] = (150.0, 6000.0)  # centres, log-uniform
    bump_octaves: tuple[float, float] = (0.3, 1.2)  # widths (standard deviation in octaves)
    room_probability: float = 0.7
    room_rt60_s: tuple[float, float] = (0.2, 1.2)
    room_wet: tuple[float, float] = (0.15, 0.5)
    saturation_probability: float = 0.5
    saturation_drive: tuple[float, float] = (1.5, 5.0)


def spectral_envelope_db(freqs_hz: np.ndarray, rng: np.random.Generator, config: TimbreAugmentConfig) -> np.ndarray:
    """A random smooth gain curve in dB over ``freqs_hz`` (0 dB at 1 kHz before the bumps)."""
    octaves = np.log2(np.maximum(freqs_hz, 20.0) / 1000.0)
    gain = rng.uniform(-config.tilt_db_per_octave, config.tilt_db_per_octave) * octaves
    low, high = np.log2(np.array(config.bump_hz) / 1000.0)
    for _ in range(config.bumps):
        centre = rng.uniform(low, high)
        width = rng.uniform(*config.bump_octaves)
        gain += rng.uniform(-config.bump_db, config.bump_db) * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
    return gain


def apply_envelope(audio: np.ndarray, sample_rate: int, gain_db_fn) -> np.ndarray:
    """Zero-phase filter of the whole signal by a gain curve given over its rFFT frequencies."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), d=1.0 / sample_rate)
    return np.fft.irfft(spectrum * 10.0 ** (gain_db_fn(freqs) / 20.0), n=len(audio)).astype(np.float32)


def add_room(audio: np.ndarray, sample_rate: int, rt60_s: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Mix in a convolution with exponentially decaying white noise (60 dB down after ``rt60_s``)."""
    from scipy.signal import fftconvolve

    length = int(rt60_s * sample_rate)
    t = np.arange(length) / sample_rate
    impulse = rng.standard_normal(length) * np.exp(-6.9 * t / rt60_s)
    impulse /= np.sqrt(np.sum(impulse**2))
    tail = fftconvolve(audio, impulse)[: len(audio)]
    return ((1.0 - wet) * audio + wet * tail).astype(np.float32)


def saturate(audio: np.ndarray, drive: float) -> np.ndarray:
    peak = float(np.max(np.abs(audio))) or 1.0
    return (np.tanh(drive * audio / peak) / np.tanh(drive) * peak).astype(np.float32)


def augment_timbre(audio: np.ndarray, sample_rate: int, rng: np.random.Generator,
                   config: TimbreAugmentConfig = TimbreAugmentConfig()) -> np.ndarray:
    """One random timbre view of ``audio`` (float32 mono), loudness restored to the input's RMS."""
    audio = np.asarray(audio, dtype=np.float32)
    rms_in = float(np.sqrt(np.mean(audio**2))) or 1.0
    out = apply_envelope(audio, sample_rate, lambda f: spectral_envelope_db(f, rng, config))
    if rng.random() < config.room_probability:
        out = add_room(out, sample_rate, rng.uniform(*config.room_rt60_s), rng.uniform(*config.room_wet), rng)
    if rng.random() < config.saturation_probability:
        out = saturate(out, rng.uniform(*config.saturation_drive))
    rms_out = float(np.sqrt(np.mean(out**2))) or 1.0
    out *= rms_in / rms_out
    peak = float(np.max(np.abs(out)))
    return (out * min(1.0, 0.98 / peak) if peak else out).astype(np.float32)
