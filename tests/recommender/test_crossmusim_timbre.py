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
from recommender.crossmusim.train import train_crossmusim

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
