"""musicnn (Pons & Serra 2019), the pretrained music-tagging audio tower, ported to torch.

Runs on numpy + torch alone: the TF-1 checkpoints inside the PyPI package ``musicnn``
0.1.0 are read by a small reader of the checkpoint format and converted once into a
cached torch state dict; the mel front-end reimplements librosa's.

    from recommender.crossmusim.musicnn import MusicnnExtractor
    extractor = MusicnnExtractor(model="MTT_musicnn")           # layer "pool", D = 1506
    features = extractor.patch_features(waveform_16k)           # [n_patches, 1506] float32
    many = extractor.extract_patch_features_batch([w1, w2])     # list of [n_i, D]

Modules: :mod:`.checkpoint` (TF checkpoint reader), :mod:`.frontend` (log-mel patches),
:mod:`.network` (the torch network), :mod:`.weights` (conversion and cache),
:mod:`.extractor` (the public feature API).
"""

from .extractor import DEFAULT_LAYER, LAYER_DIMS, MusicnnExtractor, extract_patch_features_batch
from .frontend import PATCH_FRAMES, SAMPLE_RATE
from .network import Musicnn, MusicnnOutputs
from .weights import MODELS, MusicnnWeightsError, load_musicnn, tags_for

__all__ = [
    "DEFAULT_LAYER",
    "LAYER_DIMS",
    "MODELS",
    "PATCH_FRAMES",
    "SAMPLE_RATE",
    "Musicnn",
    "MusicnnExtractor",
    "MusicnnOutputs",
    "MusicnnWeightsError",
    "extract_patch_features_batch",
    "load_musicnn",
    "tags_for",
]
