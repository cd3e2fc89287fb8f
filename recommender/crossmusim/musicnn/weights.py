"""musicnn's pretrained weights: found in the installed ``musicnn`` package, converted once, cached.

The PyPI wheel ``musicnn`` 0.1.0 (installed with ``--no-deps``; ISC licence) carries the
TF-1 checkpoints. On first use a checkpoint is read with :mod:`.checkpoint` (no
TensorFlow), mapped onto the torch network and saved as ``<cache>/<model>.pt``; later
loads read that file. The cache directory is the ``cache`` argument (the platform passes its
MUSICNN_CACHE setting), else ``var/models/musicnn/`` in the project root; this module reads
no environment. Writes are atomic (temporary file + rename), so processes converting at the
same time do not clash.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

import torch

from .checkpoint import read_checkpoint
from .network import Musicnn, state_dict_from_tf

MODELS = ("MTT_musicnn", "MSD_musicnn")
CONVERSION_VERSION = 1  # bump when the mapping changes, to invalidate cached conversions
_PROJECT_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CACHE_DIR = _PROJECT_ROOT / "var" / "models" / "musicnn"

MTT_LABELS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
MSD_LABELS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s", "alternative rock",
    "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock", "soul", "indie rock", "Mellow",
    "electronica", "80s", "folk", "90s", "chill", "instrumental", "punk", "oldies", "blues", "hard rock",
    "ambient", "acoustic", "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock", "60s", "rnb",
    "indie pop", "sad", "House", "happy",
)  # fmt: skip


class MusicnnWeightsError(RuntimeError):
    """The pretrained weights cannot be found or converted; the message says what to install."""


def tags_for(model: str) -> tuple[str, ...]:
    check_model(model)
    return MTT_LABELS if model.startswith("MTT") else MSD_LABELS


def check_model(model: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown musicnn model {model!r}; choose one of {', '.join(MODELS)}")


def cache_dir(explicit: str | Path | None = None) -> Path:
    """``explicit`` when given, else the project's default (the caller's setting travels as ``explicit``)."""
    return Path(explicit) if explicit else DEFAULT_CACHE_DIR


def checkpoint_prefix(model: str) -> Path:
    """The checkpoint prefix inside the installed ``musicnn`` package (files ``.index``, ``.data-*``).

    Located without importing the package, whose other modules import TensorFlow.
    """
    check_model(model)
    spec = importlib.util.find_spec("musicnn")
    if spec is None or not spec.submodule_search_locations:
        raise MusicnnWeightsError(
            "the musicnn weights are not installed: `pip install --no-deps musicnn==0.1.0` "
            "(its TensorFlow dependency is not needed)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / model
    if not (folder / ".index").is_file():
        raise MusicnnWeightsError(f"{folder}: no checkpoint for {model} in the installed musicnn package")
    return folder


def _checkpoint_digest(prefix: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(prefix.glob(".data-*")) + [prefix / ".index"]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def convert_checkpoint(model: str) -> dict[str, torch.Tensor]:
    """Read the TF checkpoint of ``model`` and return the torch state dict (no caching)."""
    prefix = checkpoint_prefix(model)
    variables = read_checkpoint(f"{prefix}{os.sep}", skip_suffixes=("/Adam", "/Adam_1"))
    return state_dict_from_tf(variables)


def cached_state_dict(model: str = "MTT_musicnn", cache: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The converted state dict, from the cache when it matches the installed checkpoint."""
    check_model(model)
    prefix = checkpoint_prefix(model)
    source = _checkpoint_digest(prefix)
    path = cache_dir(cache) / f"{model}.pt"
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("source_sha256") == source and saved.get("version") == CONVERSION_VERSION:
                return saved["state_dict"]
        except Exception:  # a damaged cache fails in many ways (pickle, zip, EOF): convert again below
            pass
    state = convert_checkpoint(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state_dict": state, "source_sha256": source, "version": CONVERSION_VERSION, "model": model}
    handle, tmp_name = tempfile.mkstemp(prefix=f".{model}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save(payload, tmp_name)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; other users (web, worker) read it too
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return state


def load_musicnn(model: str = "MTT_musicnn", cache: str | Path | None = None) -> Musicnn:
    """The pretrained network in eval mode, gradients off."""
    network = Musicnn(n_tags=len(tags_for(model)))
    network.load_state_dict(cached_state_dict(model, cache))
    network.eval()
    network.requires_grad_(False)
    return network
