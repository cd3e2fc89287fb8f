"""A synthetic catalog that exercises the whole training path in seconds (tests, development).

It imitates the structure that makes the real task hard: every patch feature is the sum
of a *style* signal (weak, what we want), an *ensemble* signal (strong: timbre, the
shortcut), a *mode* signal and noise; captions are sentence-like vectors that name the
style (and sometimes the instruments), several tracks share identical template captions.
Text -> audio alignment therefore has to find the style direction under the timbre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .evaluate import EvalLabels


@dataclass
class SyntheticCatalog:
    patches: list[np.ndarray]
    logmels: list[np.ndarray]
    captions: list[list[str]]
    caption_embeddings: list[np.ndarray]
    caption_weights: list[np.ndarray]
    style: np.ndarray
    ensemble: np.ndarray
    mode: np.ndarray
    work_id: np.ndarray

    def labels(self, rows: np.ndarray | None = None) -> EvalLabels:
        rows = np.arange(len(self.style)) if rows is None else rows
        return EvalLabels(style=list(self.style[rows]), ensemble=list(self.ensemble[rows]),
                          mode=list(self.mode[rows]), work_id=list(self.work_id[rows]))


def make_synthetic_catalog(n_tracks: int = 240, n_styles: int = 6, n_ensembles: int = 5, dim: int = 32,
                           text_dim: int = 384, style_strength: float = 0.6, ensemble_strength: float = 2.0,
                           n_mels: int = 32, n_frames: int = 160, seed: int = 0) -> SyntheticCatalog:
    rng = np.random.default_rng(seed)
    style_dirs = rng.normal(size=(n_styles, dim))
    ensemble_dirs = rng.normal(size=(n_ensembles, dim))
    mode_dir = rng.normal(size=dim)
    text_style = rng.normal(size=(n_styles, text_dim))
    text_ensemble = rng.normal(size=(n_ensembles, text_dim))
    mel_style = rng.normal(size=(n_styles, n_mels, 1))
    mel_ensemble = rng.normal(size=(n_ensembles, n_mels, 1))
    style = rng.integers(n_styles, size=n_tracks)
    ensemble = rng.integers(n_ensembles, size=n_tracks)
    mode = rng.integers(2, size=n_tracks)
    patches, logmels, captions, caption_embeddings, weights = [], [], [], [], []
    for i in range(n_tracks):
        n_patches = int(rng.integers(4, 10))
        base = (style_strength * style_dirs[style[i]] + ensemble_strength * ensemble_dirs[ensemble[i]]
                + 0.3 * (2 * mode[i] - 1) * mode_dir)
        patches.append((base + rng.normal(size=(n_patches, dim))).astype(np.float32))
        pulse = (np.sin(np.arange(n_frames) * (0.2 + 0.1 * style[i])) > 0).astype(np.float64)
        mel = 1.0 + 0.5 * mel_ensemble[ensemble[i]] + 0.5 * mel_style[style[i]] * pulse + 0.3 * rng.normal(
            size=(n_mels, n_frames))
        logmels.append(np.clip(mel, 0, None).astype(np.float32))
        texts, vectors = [], []
        for template in range(int(rng.integers(2, 5))):
            texts.append(f"a piece in style {style[i]} (template {template})"
                         + (f" for ensemble {ensemble[i]}" if template % 2 else ""))
            vec = text_style[style[i]] + (0.7 * text_ensemble[ensemble[i]] if template % 2 else 0) + 0.05 * template
            vectors.append(vec / np.linalg.norm(vec))
        captions.append(texts)
        caption_embeddings.append(np.array(vectors, dtype=np.float32))
        weights.append(rng.uniform(0.5, 1.0, size=len(texts)).astype(np.float32))
    return SyntheticCatalog(
        patches=patches, logmels=logmels, captions=captions, caption_embeddings=caption_embeddings,
        caption_weights=weights, style=np.array([f"s{s}" for s in style]),
        ensemble=np.array([f"e{e}" for e in ensemble]), mode=np.array(["major", "minor"])[mode],
        work_id=np.array([f"w{i}" for i in range(n_tracks)]),
    )
