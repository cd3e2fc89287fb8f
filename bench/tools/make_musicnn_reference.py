"""Produce the reference outputs of the ORIGINAL musicnn (TensorFlow) for the torch port's tests.

Dev-only tool, never run in CI or by the platform: it needs TensorFlow, which the
platform does not install. Run it once in a throwaway environment outside the repo:

    python3 -m venv /work/tfenv
    /work/tfenv/bin/pip install tensorflow-cpu==2.15.1 'numpy<2' librosa soundfile
    /work/tfenv/bin/pip install --no-deps musicnn==0.1.0
    /work/tfenv/bin/python bench/tools/make_musicnn_reference.py [--out tests/fixtures/musicnn/reference.npz]
    /work/tfenv/bin/python bench/tools/make_musicnn_reference.py --timing   # speed of the original only

It writes one small npz (tests/recommender/test_musicnn_port.py reads it) with, for a
few deterministic 4-s test signals (harmonic tones, a chirp, noise with clicks; stored as
int16 so that the test feeds the port exactly the same samples):

- ``<sig>/wave_int16``: the signal (divide by 32768 for float samples);
- ``<sig>/logmel``: librosa's mel power (float64 input) compressed as log10(1 + 10000 mel),
  the port's front-end target;
- ``<sig>/<model>/{taggram,penultimate,mean_pool,max_pool}``: the original TF network
  (graph built from musicnn.models.define_model, checkpoint restored, is_training False)
  on the patches of that log-mel (187 frames, hop 61 frames = 1 s), every patch in one
  batch so that each gets its own penultimate;
- ``<sig>/<model>/extractor_taggram`` and ``extractor_mean_pool``: musicnn's own
  ``extractor()`` on a wav file of the signal (input_length 3, input_overlap 1), i.e. the
  original end to end, float16 log-mel included;
- ``checkpoint/*``: a few tensors read by TensorFlow's checkpoint reader, to test ours.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
SR = 16000
SECONDS = 4.0
HOP_FRAMES = 61  # librosa.time_to_frames(1.0, sr=16000, n_fft=512, hop_length=256): input_overlap=1 s
MODELS = ("MTT_musicnn", "MSD_musicnn")
CHECKPOINT_TENSORS = (
    "batch_normalization/moving_mean",
    "batch_normalization/moving_variance",
    "dense_1/bias",
    "conv2d/kernel",
    "conv2d_5/bias",
)


def test_signals() -> dict[str, np.ndarray]:
    """Deterministic signals, quantised to int16 (peak well below the float16 overflow of the original)."""
    t = np.arange(int(SR * SECONDS)) / SR
    rng = np.random.default_rng(20240611)
    envelope = 0.5 - 0.5 * np.cos(2 * np.pi * 2.0 * t)  # two swells per second
    tones = sum(0.03 / k * np.sin(2 * np.pi * 220.0 * k * t + k) for k in range(1, 8)) * envelope
    tones += 0.02 * np.sin(2 * np.pi * 329.6 * t) * (t > 2.0)
    f0, f1 = 100.0, 4000.0
    chirp = 0.05 * np.sin(2 * np.pi * f0 * SECONDS / np.log(f1 / f0) * ((f1 / f0) ** (t / SECONDS) - 1))
    noise = 0.01 * rng.standard_normal(t.size)
    clicks = np.zeros(t.size)
    for start in np.arange(0, t.size, SR // 4):
        clicks[start : start + 400] += 0.2 * np.exp(-np.arange(400) / 60.0) * rng.choice([-1.0, 1.0], 400)
    signals = {"tones": tones, "chirp": chirp, "clicks": noise + clicks}
    return {name: np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16) for name, x in signals.items()}


def reference_logmel(wave: np.ndarray) -> np.ndarray:
    import librosa

    mel = librosa.feature.melspectrogram(y=wave.astype(np.float64), sr=SR, hop_length=256, n_fft=512, n_mels=96).T
    return np.log10(1.0 + 10000.0 * mel).astype(np.float32)


def patches_of(logmel: np.ndarray, n_frames: int = 187, hop: int = HOP_FRAMES) -> np.ndarray:
    return np.stack([logmel[s : s + n_frames] for s in range(0, logmel.shape[0] - n_frames + 1, hop)])


class OriginalNetwork:
    """musicnn's TF graph, built once (as the original extractor should)."""

    def __init__(self, model: str, threads: int = 0):
        import musicnn
        import tensorflow as tf
        from musicnn import models

        tf.compat.v1.disable_eager_execution()
        self.graph = tf.Graph()
        with self.graph.as_default():
            with tf.name_scope("model"):
                self.x = tf.compat.v1.placeholder(tf.float32, [None, 187, 96])
                self.is_training = tf.compat.v1.placeholder(tf.bool)
                y, _timbral, _temporal, _c1, _c2, _c3, mean_pool, max_pool, penultimate = models.define_model(
                    self.x, self.is_training, model, 50
                )
                self.outputs = {
                    "taggram": tf.nn.sigmoid(y),
                    "penultimate": penultimate,
                    "mean_pool": mean_pool,
                    "max_pool": max_pool,
                }
            config = tf.compat.v1.ConfigProto(
                intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads
            )
            self.session = tf.compat.v1.Session(graph=self.graph, config=config)
            tf.compat.v1.train.Saver().restore(self.session, os.path.dirname(musicnn.__file__) + "/" + model + "/")

    def __call__(self, patches: np.ndarray) -> dict[str, np.ndarray]:
        return self.session.run(self.outputs, feed_dict={self.x: patches, self.is_training: False})


def original_extractor(wave: np.ndarray, model: str) -> tuple[np.ndarray, dict]:
    import soundfile
    from musicnn.extractor import extractor

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "signal.wav"
        soundfile.write(path, wave, SR, subtype="FLOAT")
        taggram, _tags, features = extractor(str(path), model=model, input_length=3, input_overlap=1)
    return taggram, features


def checkpoint_tensors(model: str) -> dict[str, np.ndarray]:
    import musicnn
    import tensorflow as tf

    reader = tf.compat.v1.train.NewCheckpointReader(os.path.dirname(musicnn.__file__) + "/" + model + "/")
    out = {}
    for name in CHECKPOINT_TENSORS:
        value = reader.get_tensor(name)
        # a slice keeps the fixture small but still pins layout and values
        out[name] = value[:, :3, :, :5] if value.ndim == 4 else value
    return out


def build_fixture(out: Path) -> None:
    arrays: dict[str, np.ndarray] = {"sample_rate": np.array(SR), "patch_hop_frames": np.array(HOP_FRAMES)}
    networks = {model: OriginalNetwork(model) for model in MODELS}
    for name, pcm in test_signals().items():
        wave = pcm.astype(np.float32) / 32768.0
        logmel = reference_logmel(wave)
        arrays[f"{name}/wave_int16"] = pcm
        arrays[f"{name}/logmel"] = logmel
        patches = patches_of(logmel)
        for model, network in networks.items():
            for key, value in network(patches).items():
                arrays[f"{name}/{model}/{key}"] = value.astype(np.float32)
            taggram, features = original_extractor(wave, model)
            arrays[f"{name}/{model}/extractor_taggram"] = taggram.astype(np.float32)
            arrays[f"{name}/{model}/extractor_mean_pool"] = np.asarray(features["mean_pool"], np.float32)
            print(f"{name} {model}: {patches.shape[0]} patches, top tag p={taggram.mean(0).max():.3f}")
    for tensor, value in checkpoint_tensors("MTT_musicnn").items():
        arrays[f"checkpoint/MTT_musicnn/{tensor}"] = value
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


def timing(seconds: float = 30.0, repeats: int = 5) -> None:
    """Seconds per track of the original, on one thread: graph built once, and extractor() per call.

    Wall and CPU time are both printed: on a shared machine the CPU time of this process is
    the steadier figure. The log-mel (librosa) is included, as in the port's figure.
    """
    import librosa

    rng = np.random.default_rng(0)
    t = np.arange(int(SR * seconds)) / SR
    wave = (0.05 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    network = OriginalNetwork("MTT_musicnn", threads=1)

    def features() -> None:
        mel = librosa.feature.melspectrogram(y=wave, sr=SR, hop_length=256, n_fft=512, n_mels=96).T
        network(patches_of(np.log10(1 + 10000 * mel.astype(np.float16)).astype(np.float32), hop=187))

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/timing.py: standard library only
    from timing import best_of

    wall, cpu = best_of(features, repeats)
    print(f"original, graph built once, 1 thread: {wall:.3f} s wall, {cpu:.3f} s CPU per {seconds:.0f}-s track")
    wall, cpu = best_of(lambda: original_extractor(wave, "MTT_musicnn"), repeats)
    print(f"original extractor() per call (default threads): {wall:.3f} s wall, {cpu:.3f} s CPU per track")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures" / "musicnn" / "reference.npz")
    parser.add_argument("--timing", action="store_true", help="only time the original network")
    args = parser.parse_args(argv)
    if args.timing:
        timing()
    else:
        build_fixture(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
