"""Timbre robustness: the timbral channels of musicnn's pooled features, the augmentations on them, the loss term."""

import numpy as np
import pytest
import torch

from recommender.crossmusim.config import TrainConfig
from recommender.crossmusim.data import TrainingData
from recommender.crossmusim.musicnn.network import FRONTEND_CHANNELS, POOL_CHANNELS
from recommender.crossmusim.synthetic import make_synthetic_catalog
from recommender.crossmusim.timbre import (
    TIMBRAL_CHANNELS,
    TimbreDecorrelation,
    drop_timbre_channels,
    mix_timbre_channels,
    timbre_channel_mask,
)
from recommender.crossmusim.train import _PatchSource, train_crossmusim

POOLED_DIM = 4 * POOL_CHANNELS  # mean || max over patches of musicnn's mean_pool || max_pool


def _pooled(n: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).normal(2.0, 1.0, size=(n, POOLED_DIM)), dtype=torch.float32)


def test_the_timbral_channels_open_each_musicnn_block():
    mask = timbre_channel_mask(POOLED_DIM)
    assert mask.shape == (POOLED_DIM,) and int(mask.sum()) == 4 * TIMBRAL_CHANNELS == 1632
    for block in range(4):
        start = block * POOL_CHANNELS
        assert mask[start: start + TIMBRAL_CHANNELS].all()
        assert not mask[start + TIMBRAL_CHANNELS: start + POOL_CHANNELS].any()  # temporal and mid-end
    assert TIMBRAL_CHANNELS < FRONTEND_CHANNELS
    assert timbre_channel_mask(64).all(), "an unknown layout: every channel counts"


def test_timbre_dropout_changes_only_timbral_channels_at_its_rate_and_is_seeded():
    x, mask = _pooled(), timbre_channel_mask(POOLED_DIM)
    fill = torch.zeros(POOLED_DIM)
    out = drop_timbre_channels(x, mask, 0.5, fill, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert torch.equal(out[:, ~mask], x[:, ~mask])
    dropped = (out[:, mask] == 0).float().mean().item()
    assert dropped == pytest.approx(0.5, abs=0.02)
    # the timbral channels' statistics move towards the fill value; the others stay
    assert out[:, mask].mean() < 0.6 * x[:, mask].mean()
    again = drop_timbre_channels(x, mask, 0.5, fill, torch.Generator().manual_seed(1))
    other = drop_timbre_channels(x, mask, 0.5, fill, torch.Generator().manual_seed(2))
    assert torch.equal(out, again) and not torch.equal(out, other)
    assert drop_timbre_channels(x, mask, 0.0, fill, torch.Generator()) is x


def test_timbre_mix_moves_timbre_towards_other_tracks_and_keeps_the_rest():
    # two "ensembles" with very different timbral channels
    x, mask = _pooled(64), timbre_channel_mask(POOLED_DIM)
    x[:32, mask] += 5.0
    out = mix_timbre_channels(x, mask, 1.0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.equal(out[:, ~mask], x[:, ~mask])
    gap_before = (x[:32, mask].mean() - x[32:, mask].mean()).item()
    gap_after = (out[:32, mask].mean() - out[32:, mask].mean()).item()
    assert gap_after < 0.85 * gap_before, "mixing pulls the two timbres together"
    # every timbral value lies between the track's own and another track's
    assert torch.equal(out, mix_timbre_channels(x, mask, 1.0, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, mix_timbre_channels(x, mask, 1.0, torch.Generator().manual_seed(1)))


def test_decorrelation_is_high_when_the_embedding_follows_timbre_and_sends_gradients():
    rng = np.random.default_rng(0)
    timbre = rng.normal(size=(64, 1))
    pooled = rng.normal(size=(64, POOLED_DIM)).astype(np.float32)
    pooled[:, timbre_channel_mask(POOLED_DIM).numpy()] += 3 * timbre  # one dominant timbre direction
    term = TimbreDecorrelation.from_pooled(pooled, weight=1.0, k=1)
    indices = np.arange(64)
    following = torch.as_tensor(np.hstack([timbre, rng.normal(size=(64, 7))]), dtype=torch.float32,
                                ).requires_grad_(True)
    independent = torch.as_tensor(rng.normal(size=(64, 8)), dtype=torch.float32)
    high, low = term(following, indices), term(independent, indices)
    assert high.item() > 4 * low.item()
    high.backward()
    assert following.grad is not None and following.grad.abs().sum() > 0
    assert TimbreDecorrelation.from_pooled(pooled, weight=0.0)(independent, indices).item() == 0.0


def test_training_with_every_timbre_option_runs_and_learns():
    torch.set_num_threads(1)
    syn = make_synthetic_catalog(n_tracks=120, seed=0)
    data = TrainingData(patches=syn.patches, caption_embeddings=syn.caption_embeddings,
                        caption_weights=syn.caption_weights)
    config = TrainConfig(steps=40, batch_size=32, eval_every=40, timbre_decorrelation=0.5, timbre_components=4)
    config.augment.timbre_mix, config.augment.timbre_dropout, config.augment.timbre_transplant = 0.5, 0.3, 1.0
    config.augment.timbre_clusters = 3
    result = train_crossmusim(data, config)
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])
    again = train_crossmusim(data, config)
    assert result.losses == again.losses, "reproducible from the seed"


def test_input_clip_bounds_what_an_outlying_channel_can_do():
    from recommender.crossmusim.towers import ProjectionTower

    torch.manual_seed(0)
    tower = ProjectionTower(8, 16, 4, input_dropout=0.0, dropout=0.0, input_clip=3.0).eval()
    x = torch.zeros(1, 8)
    far, edge = x.clone(), x.clone()
    far[0, 2], edge[0, 2] = 50.0, 3.0  # 50 vs 3 standard deviations out
    assert torch.allclose(tower(far), tower(edge))
    unclipped = ProjectionTower(8, 16, 4, input_dropout=0.0, dropout=0.0).eval()
    unclipped.load_state_dict(tower.state_dict())
    assert not torch.allclose(unclipped(far), unclipped(edge))


def test_timbre_transplant_finds_the_ensembles_and_moves_tracks_between_them():
    from recommender.crossmusim.timbre import TimbreTransplant

    rng = np.random.default_rng(0)
    ensemble = np.repeat(np.arange(3), 20)
    pooled = rng.normal(size=(60, POOLED_DIM)).astype(np.float32)
    pooled[:, timbre_channel_mask(POOLED_DIM).numpy()] += 6.0 * ensemble[:, None]  # three far-apart timbres
    transplant = TimbreTransplant(pooled, k=3, seed=0)
    # the clusters are the ensembles (up to naming)
    assert len({(e, c) for e, c in zip(ensemble, transplant.labels, strict=True)}) == 3
    x = torch.as_tensor(pooled[:8])
    out = transplant(x, np.arange(8), 1.0, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    timbral = timbre_channel_mask(POOLED_DIM)
    # ensemble 0's tracks move towards a louder timbre; the shift is one vector per track
    assert (out[:, timbral].mean(1) > x[:, timbral].mean(1)).all()
    shift = out - x
    assert torch.allclose(shift[:, timbral].std(1), torch.zeros(8), atol=0.5)
    assert torch.equal(out, transplant(x, np.arange(8), 1.0, torch.Generator().manual_seed(0)))
    assert transplant(x, np.arange(8), 0.0, torch.Generator()) is x


# --- timbre views (TrainingData.patch_views): training pools a track from one of them ----------------------

def _data(views_per_track: int = 0, n: int = 64) -> TrainingData:
    syn = make_synthetic_catalog(n_tracks=n, seed=0)
    views = None
    if views_per_track:
        rng = np.random.default_rng(1)
        views = [[p + rng.normal(0, 0.5, size=p.shape).astype(np.float32) for _ in range(views_per_track)]
                 for p in syn.patches]
    return TrainingData(patches=syn.patches, caption_embeddings=syn.caption_embeddings,
                        caption_weights=syn.caption_weights, patch_views=views)


def test_the_patch_source_pools_views_at_their_rate_and_only_the_tracks_own():
    data = _data(views_per_track=2, n=40)
    data.patch_views[3] = []  # a track whose views failed: always its own patches
    source = _PatchSource(data, 0.5)
    rng = np.random.default_rng(0)
    batch = np.arange(40)
    picked = np.stack([source.rows(batch, rng) for _ in range(200)])
    own = picked == batch
    assert own[:, 3].all()
    assert np.delete(own, 3, axis=1).mean() == pytest.approx(0.5, abs=0.03)
    for track in (0, 17, 39):  # a view of a track is one of that track's own views
        assert set(picked[~own[:, track], track]) == set(source.views[track])
    always = _PatchSource(data, 1.0)
    assert not (always.rows(batch, rng) == batch)[np.arange(40) != 3].any()
    assert np.array_equal(_PatchSource(data, 0.0).rows(batch, rng), batch)


def test_training_without_views_or_at_probability_zero_is_the_run_it_was():
    torch.set_num_threads(1)
    config = TrainConfig(steps=15, batch_size=16, seed=2)
    plain = train_crossmusim(_data(0), config)
    config_zero = TrainConfig(steps=15, batch_size=16, seed=2)
    config_zero.augment.view_probability = 0.0
    assert train_crossmusim(_data(2), config_zero).losses == plain.losses
    config_views = TrainConfig(steps=15, batch_size=16, seed=2)
    config_views.augment.view_probability = 0.5
    with_views = train_crossmusim(_data(2), config_views)
    assert with_views.losses != plain.losses
    assert train_crossmusim(_data(2), config_views).losses == with_views.losses, "reproducible from the seed"


def test_timbral_view_channels_take_only_timbre_from_the_view():
    from recommender.crossmusim.factory import create_model_for_data
    from recommender.crossmusim.features import pool_many
    from recommender.crossmusim.musicnn.network import POOL_CHANNELS
    from recommender.crossmusim.timbre import timbre_channel_mask
    from recommender.crossmusim.train import _audio_views

    syn = make_synthetic_catalog(n_tracks=8, seed=0)
    dim = 2 * POOL_CHANNELS  # musicnn's patch features: mean_pool || max_pool of its 753 channels
    patches = [np.random.default_rng(i).normal(size=(4, dim)).astype(np.float32) for i in range(8)]
    data = TrainingData(patches=patches, patch_views=[[p + 5.0] for p in patches],
                        caption_embeddings=syn.caption_embeddings[:8], caption_weights=syn.caption_weights[:8])
    config = TrainConfig(steps=1, batch_size=8)
    config.augment.patch_window_min_frac, config.augment.feature_noise = 1.0, 0.0
    config.augment.view_probability = 1.0
    model = create_model_for_data(config.model, data)
    batch = np.arange(8)
    own = torch.as_tensor(pool_many(patches))
    for channels, from_view in (("all", np.ones(2 * dim, bool)), ("timbral", timbre_channel_mask(2 * dim).numpy())):
        config.augment.view_channels = channels
        pooled = _audio_views(data, model, config, batch, _PatchSource(data, 1.0), torch.Generator().manual_seed(0),
                              np.random.default_rng(0))
        assert torch.allclose(pooled[:, from_view], own[:, from_view] + 5.0, atol=1e-5)
        assert torch.allclose(pooled[:, ~from_view], own[:, ~from_view], atol=1e-5)
