"""musicnn's input representation, in numpy: 16 kHz audio -> log-compressed 96-band mel patches.

musicnn computes its input with librosa (``librosa.feature.melspectrogram`` defaults:
centred frames padded with zeros, periodic Hann window, power 2, Slaney mel scale and
Slaney area normalisation), compresses it as ``log10(1 + 10000 * mel)`` and cuts it into
3-s patches of 187 frames. This module reproduces that without librosa, in float64 so
that the result does not depend on FFT rounding. (Frames are padded with zeros as in
librosa >= 0.10; the librosa of musicnn's day reflected the signal, which changes only the
first and last frame.)

The original extractor rounds the mel power to float16 (musicnn's training data was
stored so too) before the logarithm; ``float16_mel=True`` (the extractor's default) does
the same, which makes the port match the original end to end. The mel power itself is
computed in float64 and the float16 rounding is clipped at float16's largest value.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 512
HOP_LENGTH = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as musicnn's extractor computes it
DEFAULT_PATCH_HOP = PATCH_FRAMES  # musicnn's default input_overlap=False: patches do not overlap
LOG_SCALE = 10000.0


def hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    """Slaney's auditory-toolbox mel scale (librosa ``htk=False``): linear below 1 kHz, log above."""
    frequencies = np.asarray(frequencies, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = frequencies / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_region = frequencies >= min_log_hz
    mels = np.where(log_region, min_log_mel + np.log(np.maximum(frequencies, min_log_hz) / min_log_hz) / logstep, mels)
    return mels


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


@lru_cache(maxsize=8)
def mel_filterbank(
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """librosa's default mel filterbank ``[n_mels, 1 + n_fft // 2]`` (Slaney scale and norm).

    Triangles between mel-spaced edge frequencies, each scaled to unit area
    (``2 / (upper - lower)`` in Hz). Rounded to float32 because librosa stores it so;
    keeping that rounding makes the mel power match librosa's to float32 precision.
    """
    fmax = sample_rate / 2.0 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=4)
def _hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window (scipy ``get_window('hann', n, fftbins=True)``, librosa's default)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)


def power_spectrogram(waveform: np.ndarray, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH) -> np.ndarray:
    """|STFT|^2 as ``[frames, 1 + n_fft // 2]`` float64, frames centred (zero padding of n_fft // 2)."""
    audio = np.asarray(waveform, dtype=np.float64)
    if audio.ndim != 1:
        raise ValueError(f"expected a mono waveform (1-D), got shape {audio.shape}")
    padded = np.pad(audio, n_fft // 2, mode="constant")
    n_frames = 1 + (len(padded) - n_fft) // hop_length
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length][:n_frames]
    spectrum = np.fft.rfft(frames * _hann(n_fft), axis=1)
    return spectrum.real**2 + spectrum.imag**2


def mel_power(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mel power spectrogram ``[frames, 96]`` float64, as ``librosa.feature.melspectrogram(...).T``."""
    basis = mel_filterbank(sample_rate, N_FFT, N_MELS).astype(np.float64)
    return power_spectrogram(waveform) @ basis.T


def log_compress(mel: np.ndarray, float16_mel: bool = False) -> np.ndarray:
    """musicnn's compression ``log10(1 + 10000 * mel)`` as float32.

    ``float16_mel`` first rounds the mel power to float16 (clipped to its largest finite
    value), as musicnn's extractor does and as its training data was stored.
    """
    mel = np.asarray(mel, dtype=np.float64)
    if float16_mel:
        mel = np.minimum(mel, np.finfo(np.float16).max).astype(np.float16).astype(np.float64)
    return np.log10(1.0 + LOG_SCALE * mel).astype(np.float32)


def log_mel(waveform: np.ndarray, sample_rate: int = SAMPLE_RATE, float16_mel: bool = False) -> np.ndarray:
    """The whole input representation ``[frames, 96]`` float32 of a 16 kHz mono waveform."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"musicnn expects {SAMPLE_RATE} Hz audio, got {sample_rate} Hz: resample first")
    waveform = np.asarray(waveform)
    if not np.issubdtype(waveform.dtype, np.floating):
        raise ValueError(f"expected float samples in [-1, 1], got dtype {waveform.dtype}: convert PCM first")
    if waveform.size == 0:
        raise ValueError("empty waveform")
    if not np.isfinite(waveform).all():
        raise ValueError("waveform contains NaN or infinite samples")
    return log_compress(mel_power(waveform, sample_rate), float16_mel=float16_mel)


def patch_starts(n_frames: int, patch_frames: int = PATCH_FRAMES, hop: int = DEFAULT_PATCH_HOP) -> list[int]:
    """First frame of every whole patch, as musicnn's ``batch_data`` (a trailing remainder is dropped)."""
    return list(range(0, n_frames - patch_frames + 1, hop))


def make_patches(spectrogram: np.ndarray, patch_frames: int = PATCH_FRAMES, hop: int = DEFAULT_PATCH_HOP) -> np.ndarray:
    """Cut ``[frames, 96]`` into ``[n_patches, patch_frames, 96]``.

    musicnn's extractor fails on input shorter than one patch; here such input is
    repeated until it fills one (the ``repeat-pad`` musicnn's training used for short clips).
    """
    if hop <= 0:
        raise ValueError("patch hop must be positive")
    n_frames = spectrogram.shape[0]
    if n_frames == 0:
        raise ValueError("empty spectrogram")
    if n_frames < patch_frames:
        repeats = -(-patch_frames // n_frames)
        spectrogram = np.tile(spectrogram, (repeats, 1))[:patch_frames]
        n_frames = patch_frames
    starts = patch_starts(n_frames, patch_frames, hop)
    windows = np.lib.stride_tricks.sliding_window_view(spectrogram, patch_frames, axis=0)  # [n, 96, patch]
    return np.ascontiguousarray(windows[starts].transpose(0, 2, 1))
