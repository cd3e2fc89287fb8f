"""A numpy log-mel front end for the audio paths that do not use the pretrained backbone.

Used by the from-scratch CNN tower and by the "mean-pooled log-mel" reference row.
Slaney-style mel filters (like librosa's default), power spectrogram of a Hann-windowed
STFT, then ``log10(1 + 10000 * mel)`` — the same compression musicnn uses, so gain
changes are close to additive shifts for loud bins.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-9) / min_log_hz) / logstep, hz / f_sp)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


@lru_cache(maxsize=8)
def mel_filterbank(n_mels: int = 96, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Slaney-normalised triangular filters [n_mels, n_fft // 2 + 1]."""
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel_spectrogram(wave: np.ndarray, n_mels: int = 96, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """16-kHz mono waveform -> log-compressed mel spectrogram [n_mels, n_frames] float32."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected mono audio, got shape {wave.shape}")
    if wave.shape[0] < n_fft:
        wave = np.pad(wave, (0, n_fft - wave.shape[0]))
    padded = np.pad(wave, (n_fft // 2, n_fft // 2), mode="reflect")
    n_frames = 1 + (padded.shape[0] - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(n_frames, n_fft), strides=(padded.strides[0] * hop, padded.strides[0])
    )
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = mel_filterbank(n_mels, SAMPLE_RATE, n_fft) @ power.T.astype(np.float32)
    return np.log10(1.0 + 10000.0 * mel).astype(np.float32)


def mean_pooled_log_mel(logmel: np.ndarray) -> np.ndarray:
    """The "mean-pooled log-mel" reference embedding: the average spectrum of the track."""
    return logmel.mean(axis=1).astype(np.float32)
