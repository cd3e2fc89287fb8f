"""The torch port of musicnn against the original TensorFlow musicnn.

The reference outputs in tests/fixtures/musicnn/reference.npz were produced once by
bench/tools/make_musicnn_reference.py with the original code (TensorFlow 2.15, librosa);
the front-end, the network and the whole extractor are compared separately so that a
failure says where the port went wrong. No database is needed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from recommender.crossmusim.musicnn import LAYER_DIMS, MusicnnExtractor, extract_patch_features_batch, frontend
from recommender.crossmusim.musicnn.checkpoint import CheckpointFormatError, CheckpointReader, read_checkpoint
from recommender.crossmusim.musicnn.network import FrozenBatchNorm, conv_relu_bn_max_over_freq
from recommender.crossmusim.musicnn.weights import cached_state_dict, checkpoint_prefix, load_musicnn, tags_for

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "musicnn" / "reference.npz"
SIGNALS = ("tones", "chirp", "clicks")
MODELS = ("MTT_musicnn", "MSD_musicnn")
NETWORK_OUTPUTS = ("taggram", "penultimate", "mean_pool", "max_pool")
TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("musicnn_cache")


@pytest.fixture(scope="module")
def networks(weights_cache):
    return {model: load_musicnn(model, weights_cache) for model in MODELS}


def wave_of(reference, signal: str) -> np.ndarray:
    return reference[f"{signal}/wave_int16"].astype(np.float32) / 32768.0


# --- checkpoint reader ---------------------------------------------------------------


def test_checkpoint_reader_reads_the_tensors_tensorflow_reads(reference):
    reader = CheckpointReader(f"{checkpoint_prefix('MTT_musicnn')}{os.sep}")
    assert reader.num_shards == 1
    assert reader.entries["conv2d/kernel"].shape == (7, 38, 1, 204)
    assert reader.entries["dense/kernel"].shape == (1506, 200)
    assert reader.entries["beta1_power"].shape == ()
    prefix = "checkpoint/MTT_musicnn/"
    names = [key[len(prefix) :] for key in reference if key.startswith(prefix)]
    assert "conv2d/kernel" in names and "dense_1/bias" in names
    for name in names:
        value = reader.tensor(name)
        assert value.dtype == np.float32
        expected = reference[prefix + name]
        got = value[:, :3, :, :5] if value.ndim == 4 else value
        np.testing.assert_array_equal(got, expected)
    assert reader.tensor("batch_normalization/moving_mean")[0] == pytest.approx(1.593989, abs=1e-6)


def test_read_checkpoint_skips_optimiser_slots():
    variables = read_checkpoint(f"{checkpoint_prefix('MTT_musicnn')}{os.sep}", skip_suffixes=("/Adam", "/Adam_1"))
    assert not any(name.endswith(("/Adam", "/Adam_1")) for name in variables)
    assert len(variables) == 11 * 4 + 8 * 2 + 2 * 2 + 2  # batch-norms, convs, dense layers, beta powers


def test_checkpoint_reader_rejects_files_that_are_not_checkpoints(tmp_path):
    (tmp_path / "bad.index").write_bytes(b"not an sstable" * 10)
    with pytest.raises(CheckpointFormatError, match="magic"):
        CheckpointReader(tmp_path / "bad")
    with pytest.raises(CheckpointFormatError, match="not found"):
        CheckpointReader(tmp_path / "missing")


# --- front-end -----------------------------------------------------------------------


@pytest.mark.parametrize("signal", SIGNALS)
def test_log_mel_matches_librosa(reference, signal):
    ours = frontend.log_mel(wave_of(reference, signal), float16_mel=False)
    expected = reference[f"{signal}/logmel"]
    assert ours.shape == expected.shape == (1 + len(wave_of(reference, signal)) // 256, 96)
    np.testing.assert_allclose(ours, expected, **TOLERANCE)


def test_patches_follow_musicnn_batching():
    spectrogram = np.arange(500 * 96, dtype=np.float32).reshape(500, 96)
    patches = frontend.make_patches(spectrogram)
    assert patches.shape == (2, 187, 96)  # starts 0 and 187; the remainder after 374 is dropped
    np.testing.assert_array_equal(patches[1], spectrogram[187:374])
    short = frontend.make_patches(spectrogram[:50])
    assert short.shape == (1, 187, 96)
    np.testing.assert_array_equal(short[0, 50:100], spectrogram[:50])  # repeat-padded


# --- network -------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("signal", SIGNALS)
def test_network_matches_tensorflow(reference, networks, model, signal):
    patches = frontend.make_patches(reference[f"{signal}/logmel"], hop=int(reference["patch_hop_frames"]))
    with torch.inference_mode():
        outputs = networks[model](torch.from_numpy(patches))
    for name in NETWORK_OUTPUTS:
        expected = reference[f"{signal}/{model}/{name}"]
        np.testing.assert_allclose(getattr(outputs, name).numpy(), expected, err_msg=name, **TOLERANCE)


def test_max_first_front_end_equals_the_original_order_of_ops():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 8, kernel_size=(7, 5))
    bn = FrozenBatchNorm(8)
    bn.gamma.copy_(torch.tensor([1.5, -0.7, 0.2, -2.0, 1.0, -0.1, 0.9, -1.1]))  # scales of both signs
    bn.beta.normal_()
    bn.moving_mean.normal_()
    bn.moving_variance.uniform_(0.5, 2.0)
    x = torch.randn(3, 1, 20, 16)
    with torch.no_grad():
        expected = bn(torch.relu(conv(x))).amax(dim=3)
        torch.testing.assert_close(conv_relu_bn_max_over_freq(x, conv, bn), expected, rtol=1e-6, atol=1e-6)


# --- extractor -----------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_extractor_matches_the_original_end_to_end(reference, weights_cache, model):
    extractor = MusicnnExtractor(model, layer="taggram", cache_dir=weights_cache, patch_hop_frames=61)
    for signal in SIGNALS:
        wave = wave_of(reference, signal)
        out = extractor.run_patches(extractor.patches(wave), ["taggram", "mean_pool"])
        np.testing.assert_allclose(out["taggram"], reference[f"{signal}/{model}/extractor_taggram"], **TOLERANCE)
        np.testing.assert_allclose(out["mean_pool"], reference[f"{signal}/{model}/extractor_mean_pool"], **TOLERANCE)


def test_patch_features_shapes_and_layers(reference, weights_cache):
    wave = np.concatenate([wave_of(reference, "tones"), wave_of(reference, "chirp")])  # 8 s: 2 patches
    extractor = MusicnnExtractor(cache_dir=weights_cache)
    features = extractor.patch_features(wave)
    assert extractor.layer == "pool" and extractor.dim == 1506
    assert features.shape == (2, 1506) and features.dtype == np.float32
    outputs = extractor.run_patches(extractor.patches(wave), list(LAYER_DIMS))
    for name, dim in LAYER_DIMS.items():
        assert outputs[name].shape == (2, dim)
    np.testing.assert_array_equal(features, np.concatenate([outputs["mean_pool"], outputs["max_pool"]], axis=1))
    # the original repeats the first patch's penultimate; each patch has its own here
    assert np.abs(outputs["penultimate"][0] - outputs["penultimate"][1]).max() > 1e-2


def test_batch_extraction_equals_one_track_at_a_time(reference, weights_cache):
    extractor = MusicnnExtractor(layer="penultimate", cache_dir=weights_cache, batch_size=3)
    waves = [wave_of(reference, s) for s in SIGNALS] + [wave_of(reference, "tones")[:8000]]  # last: 0.5 s
    batched = extractor.extract_patch_features_batch(waves)
    assert [b.shape for b in batched] == [(1, 200)] * 4
    for wave, features in zip(waves, batched, strict=True):
        np.testing.assert_allclose(features, extractor.patch_features(wave), rtol=1e-5, atol=1e-5)
    assert extractor.extract_patch_features_batch([]) == []


def test_module_level_batch_function(reference, weights_cache):
    features = extract_patch_features_batch([wave_of(reference, "chirp")], layer="mean_pool", cache_dir=weights_cache)
    assert features[0].shape == (1, 753)


def test_bad_input_is_refused_with_a_reason(weights_cache):
    extractor = MusicnnExtractor(cache_dir=weights_cache)
    with pytest.raises(ValueError, match="empty"):
        extractor.patch_features(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="mono"):
        extractor.patch_features(np.zeros((2, 16000), np.float32))
    with pytest.raises(ValueError, match="float samples"):
        extractor.patch_features(np.zeros(16000, np.int16))
    with pytest.raises(ValueError, match="NaN"):
        extractor.patch_features(np.full(16000, np.nan, np.float32))
    with pytest.raises(ValueError, match="unknown musicnn layer"):
        MusicnnExtractor(layer="pool5", cache_dir=weights_cache)
    with pytest.raises(ValueError, match="unknown musicnn model"):
        MusicnnExtractor(model="MTT_vgg", cache_dir=weights_cache)


# --- weights cache -------------------------------------------------------------------


def test_weights_are_converted_once_and_cached(tmp_path):
    cache = tmp_path / "cache"  # the platform passes its MUSICNN_CACHE setting
    state = cached_state_dict("MTT_musicnn", cache)
    cached = cache / "MTT_musicnn.pt"
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    again = cached_state_dict("MTT_musicnn", cache)
    assert cached.stat().st_mtime_ns == stamp  # read back, not converted again
    assert set(again) == set(state)
    torch.testing.assert_close(again["dense.weight"], state["dense.weight"])
    assert state["timbral_convs.0.weight"].shape == (204, 1, 7, 38)
    assert state["midend_convs.0.weight"].shape == (64, 561, 7)
    cached.write_bytes(b"corrupt")  # a damaged cache is rebuilt, not trusted
    rebuilt = cached_state_dict("MTT_musicnn", cache)
    torch.testing.assert_close(rebuilt["output.bias"], state["output.bias"])
    assert cached.stat().st_size > 1_000_000


def test_tag_names_are_the_original_ones():
    from musicnn import configuration  # the installed wheel's tag lists; imports no TensorFlow

    assert list(tags_for("MTT_musicnn")) == configuration.MTT_LABELS
    assert list(tags_for("MSD_musicnn")) == configuration.MSD_LABELS
