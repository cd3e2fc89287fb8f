"""The log-mel front end of the audio paths that do not use the pretrained backbone.

Used by the from-scratch CNN tower and by the "mean-pooled log-mel" reference row. It is
the musicnn front end (:mod:`.musicnn.frontend`: librosa-compatible STFT, Slaney mel
filters, ``log10(1 + 10000 * mel)``) with a free number of mel bands, laid out
``[n_mels, frames]`` as the CNN reads it.
"""

from __future__ import annotations

import numpy as np

from .musicnn.frontend import N_FFT, SAMPLE_RATE, log_compress, mel_filterbank, power_spectrogram


def log_mel_spectrogram(wave: np.ndarray, n_mels: int = 96) -> np.ndarray:
    """16-kHz mono waveform -> log-compressed mel spectrogram [n_mels, n_frames] float32."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"expected mono audio, got shape {wave.shape}")
    if wave.shape[0] == 0:
        raise ValueError("empty waveform")
    mel = power_spectrogram(wave) @ mel_filterbank(SAMPLE_RATE, N_FFT, n_mels).astype(np.float64).T
    return log_compress(mel).T.copy()


def mean_pooled_log_mel(logmel: np.ndarray) -> np.ndarray:
    """The "mean-pooled log-mel" reference embedding: the average spectrum of the track."""
    return logmel.mean(axis=1).astype(np.float32)
