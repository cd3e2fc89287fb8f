"""Per-patch musicnn features of 16 kHz waveforms: the pretrained audio tower's input.

Unlike musicnn's own ``extractor()``, the network is built and its weights loaded once
per :class:`MusicnnExtractor` (the original rebuilds the TF graph on every call), every
patch gets its own ``penultimate`` (and ``cnn*``) values (the original repeats the first
patch's), patches of many tracks run through the network together in batches, and input
shorter than one patch is repeat-padded instead of failing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import frontend
from .network import BACKEND_UNITS, POOL_CHANNELS, Musicnn
from .weights import load_musicnn, tags_for

# Per-patch feature layers and their width D.
LAYER_DIMS: dict[str, int] = {
    "pool": 2 * POOL_CHANNELS,  # 1506: mean_pool then max_pool
    "mean_pool": POOL_CHANNELS,  # 753: time-mean of the front-end (561) and mid-end (3 x 64) maps
    "max_pool": POOL_CHANNELS,  # 753: time-max of the same maps
    "penultimate": BACKEND_UNITS,  # 200: batch-normalised dense layer before the tag layer
    "taggram": 50,  # tag probabilities (MTT: MagnaTagATune tags, MSD: Million Song Dataset tags)
}
DEFAULT_LAYER = "pool"
# Patches per network call. On a CPU small batches are fastest (measured: 2 patches per call
# ~0.41 s CPU per 30-s track, 10 per call ~0.70 s): the front-end conv outputs of a few
# patches stay in cache. A GPU wants large batches.
CPU_BATCH_SIZE = 2
ACCELERATOR_BATCH_SIZE = 256


def _select(outputs, layer: str) -> torch.Tensor:
    if layer == "pool":
        return torch.cat([outputs.mean_pool, outputs.max_pool], dim=1)
    return getattr(outputs, layer)


class MusicnnExtractor:
    """musicnn features per 3-s patch of a 16 kHz mono waveform.

    ``layer`` picks the representation (``D`` = :attr:`dim`):

    - ``"pool"`` (default, D = 1506): ``mean_pool`` followed by ``max_pool`` of the patch.
      These are the statistics musicnn's own back-end reads, taken before any tag-specific
      layer, so they keep the timbral, temporal and mid-end information that a new task
      (text-guided similarity) can reweight, instead of the 50 MagnaTagATune tags'
      bottleneck; mean and max together describe both the typical and the peak activation
      of each filter. A trained projection on top chooses what matters.
    - ``"mean_pool"`` / ``"max_pool"`` (D = 753 each), ``"penultimate"`` (D = 200, the
      tag-trained bottleneck) and ``"taggram"`` (D = 50, tag probabilities).

    Patches are 187 frames (3 s) with musicnn's default hop of 187 frames (no overlap);
    ``patch_hop_frames`` sets another hop. ``batch_size`` is the number of patches per
    network call (default: 2 on a CPU, where small batches are fastest). ``float16_mel``
    rounds the mel power to float16 before the log as the original does (see
    :mod:`.frontend`). The weights are converted from the installed ``musicnn`` package on
    first use and cached (see :mod:`.weights`). The extractor leaves torch's thread count
    to the caller.
    """

    def __init__(
        self,
        model: str = "MTT_musicnn",
        layer: str = DEFAULT_LAYER,
        cache_dir: str | Path | None = None,
        patch_hop_frames: int = frontend.DEFAULT_PATCH_HOP,
        batch_size: int | None = None,
        float16_mel: bool = True,
        device: str | torch.device = "cpu",
    ):
        if layer not in LAYER_DIMS:
            raise ValueError(f"unknown musicnn layer {layer!r}; choose one of {', '.join(LAYER_DIMS)}")
        self.device = torch.device(device)
        if batch_size is None:
            batch_size = CPU_BATCH_SIZE if self.device.type == "cpu" else ACCELERATOR_BATCH_SIZE
        if patch_hop_frames <= 0 or batch_size <= 0:
            raise ValueError("patch_hop_frames and batch_size must be positive")
        self.model = model
        self.layer = layer
        self.tags = tags_for(model)
        self.patch_hop_frames = patch_hop_frames
        self.batch_size = batch_size
        self.float16_mel = float16_mel
        self.network: Musicnn = load_musicnn(model, cache_dir).to(self.device)

    @property
    def dim(self) -> int:
        """Feature width D of :attr:`layer`."""
        return LAYER_DIMS[self.layer]

    def patches(self, waveform_16k: np.ndarray) -> np.ndarray:
        """The network input of one waveform: ``[n_patches, 187, 96]`` float32 log-mel patches."""
        spectrogram = frontend.log_mel(np.asarray(waveform_16k), float16_mel=self.float16_mel)
        return frontend.make_patches(spectrogram, frontend.PATCH_FRAMES, self.patch_hop_frames)

    @torch.inference_mode()
    def run_patches(self, patches: np.ndarray, layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run ``[n, 187, 96]`` patches through the network; ``{layer: [n, D]}`` for the asked layers."""
        layers = list(layers) if layers is not None else [self.layer]
        for name in layers:
            if name not in LAYER_DIMS:
                raise ValueError(f"unknown musicnn layer {name!r}; choose one of {', '.join(LAYER_DIMS)}")
        chunks: dict[str, list[np.ndarray]] = {name: [] for name in layers}
        for start in range(0, len(patches), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(patches[start : start + self.batch_size], dtype=np.float32))
            outputs = self.network(batch.to(self.device))
            for name in layers:
                chunks[name].append(_select(outputs, name).float().cpu().numpy())
        return {
            name: np.concatenate(parts) if parts else np.zeros((0, LAYER_DIMS[name]), np.float32)
            for name, parts in chunks.items()
        }

    def patch_features(self, waveform_16k: np.ndarray) -> np.ndarray:
        """``[n_patches, D]`` float32 features of one 16 kHz mono waveform."""
        return self.run_patches(self.patches(waveform_16k))[self.layer]

    def extract_patch_features_batch(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`patch_features` of many waveforms, their patches batched together (faster)."""
        all_patches = [self.patches(waveform) for waveform in waveforms]
        if not all_patches:
            return []
        features = self.run_patches(np.concatenate(all_patches))[self.layer]
        bounds = np.cumsum([len(p) for p in all_patches])[:-1]
        return np.split(features, bounds)

    patch_features_batch = extract_patch_features_batch


_DEFAULT_EXTRACTORS: dict[tuple[str, str, str], MusicnnExtractor] = {}


def extract_patch_features_batch(
    waveforms: Sequence[np.ndarray], model: str = "MTT_musicnn", layer: str = DEFAULT_LAYER,
    cache_dir: str | Path | None = None,
) -> list[np.ndarray]:
    """Module-level shortcut: per-patch features of many 16 kHz waveforms with a shared extractor.

    ``cache_dir`` is where the converted weights live (see :mod:`.weights`; default the project's var/).
    """
    key = (model, layer, str(cache_dir or ""))
    if key not in _DEFAULT_EXTRACTORS:
        _DEFAULT_EXTRACTORS[key] = MusicnnExtractor(model=model, layer=layer, cache_dir=cache_dir)
    return _DEFAULT_EXTRACTORS[key].extract_patch_features_batch(waveforms)
