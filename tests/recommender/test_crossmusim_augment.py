"""Augmentation, feature pooling/caching, the log-mel front end and label stripping."""

import numpy as np
import pytest
import torch

from recommender.crossmusim.augment import (
    AugmentConfig,
    augment_logmel,
    choose_captions,
    crop_logmels,
    sample_patch_windows,
)
from recommender.crossmusim.features import (
    pad_patches,
    pool_masked,
    pool_patches,
)
from recommender.crossmusim.logmel import log_mel_spectrogram
from recommender.crossmusim.textprep import strip_label_words


def test_pool_patches_is_mean_then_max():
    patches = np.array([[1.0, 5.0], [3.0, -1.0]])
    assert pool_patches(patches).tolist() == [2.0, 2.0, 3.0, 5.0]
    with pytest.raises(ValueError):
        pool_patches(np.zeros((0, 3)))


def test_masked_pooling_matches_numpy_pooling():
    rng = np.random.default_rng(0)
    tracks = [rng.normal(size=(n, 4)).astype(np.float32) for n in (2, 5, 3)]
    padded, mask = pad_patches(tracks)
    pooled = pool_masked(padded, mask).numpy()
    for i, patches in enumerate(tracks):
        np.testing.assert_allclose(pooled[i], pool_patches(patches), rtol=1e-6)


def test_patch_windows_are_contiguous_non_empty_and_seeded():
    mask = torch.zeros(50, 10, dtype=torch.bool)
    lengths = torch.randint(1, 11, (50,), generator=torch.Generator().manual_seed(1))
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    a = sample_patch_windows(mask, 0.5, torch.Generator().manual_seed(3))
    b = sample_patch_windows(mask, 0.5, torch.Generator().manual_seed(3))
    c = sample_patch_windows(mask, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a & ~mask).sum() == 0
    counts = a.sum(1)
    assert (counts >= torch.ceil(lengths * 0.5)).all() and (counts >= 1).all()
    for row in a:  # contiguous: one run of True
        idx = torch.nonzero(row).flatten()
        assert (idx.diff() == 1).all()


def test_choose_captions_varies_per_step_and_follows_scores():
    weights = [np.array([1.0, 1.0, 1.0])] * 200
    rng = np.random.default_rng(0)
    first, second = choose_captions(weights, rng, False), choose_captions(weights, rng, False)
    assert (first != second).any() and set(first) == {0, 1, 2}
    picks = choose_captions([np.array([0.0, 1.0])] * 100, np.random.default_rng(1), by_score=True)
    assert (picks == 1).all()


def test_logmel_augmentation_shapes_and_determinism():
    logmels = [np.random.default_rng(i).uniform(0, 3, size=(32, n)).astype(np.float32) for i, n in enumerate((50, 80))]
    crops = crop_logmels(logmels, 64, np.random.default_rng(0))
    assert crops.shape == (2, 32, 64)
    assert torch.equal(crops[0, :, 50:], torch.zeros(32, 14))  # the short track is padded
    config = AugmentConfig()
    a = augment_logmel(crops, config, torch.Generator().manual_seed(5))
    b = augment_logmel(crops, config, torch.Generator().manual_seed(5))
    assert a.shape == crops.shape and torch.equal(a, b) and not torch.equal(a, crops)


def test_log_mel_front_end_shape_and_tone_position():
    t = np.arange(16000) / 16000
    low = log_mel_spectrogram(np.sin(2 * np.pi * 220 * t).astype(np.float32))
    high = log_mel_spectrogram(np.sin(2 * np.pi * 3000 * t).astype(np.float32))
    assert low.shape == (96, 1 + 16000 // 256)
    assert low.mean(1).argmax() < high.mean(1).argmax()
    assert low.min() >= 0


def test_strip_label_words_removes_labels_and_keeps_music_words():
    text = "A lively Irish reel from O'Neill's Music of Ireland, played on fiddle; reels like this by Bach."
    stripped = strip_label_words(text, ["irish_reel", "reel", "O'Neill's Music of Ireland", "J. S. Bach"])
    lowered = stripped.lower()
    for word in ("irish", "reel", "reels", "neill", "ireland", "bach"):
        assert word not in lowered.split() and word not in lowered.replace(",", " ").replace(".", " ").split()
    assert "lively" in stripped and "fiddle" in stripped and "played" in stripped


def test_training_captions_drop_instrumentation_and_instrument_names():
    from recommender.crossmusim.textprep import instrument_vocabulary, training_captions

    words = instrument_vocabulary([{"instruments": ["tin whistle", "piano"], "ensemble": "whistle+piano"}])
    texts, scores = training_captions(
        [("A lively reel played on tin whistle and piano.", 0.9, "style"),
         ("Bright piano and whistle timbres.", 0.8, "instrumentation")], words)
    assert scores == [0.9] and len(texts) == 1
    assert "piano" not in texts[0] and "whistle" not in texts[0] and "lively reel" in texts[0]
