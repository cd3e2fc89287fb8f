"""The whole training path on a synthetic catalog: it learns, it is reproducible, it resumes."""

import numpy as np
import pytest
import torch

from recommender.crossmusim.baselines import baseline_embeddings, untrained_cnn_embeddings
from recommender.crossmusim.config import TrainConfig
from recommender.crossmusim.data import TrainingData
from recommender.crossmusim.evaluate import evaluate_embeddings
from recommender.crossmusim.factory import load_model, save_checkpoint
from recommender.crossmusim.features import pool_many
from recommender.crossmusim.inference import embed_audio, embed_text
from recommender.crossmusim.scratch_cnn import ScratchCNNConfig
from recommender.crossmusim.synthetic import make_synthetic_catalog
from recommender.crossmusim.towers import AudioTowerConfig, CrossMuSimConfig
from recommender.crossmusim.train import train_crossmusim
from recommender.crossmusim.validation import retrieval_validator

TRAIN, VAL, TEST = np.arange(0, 160), np.arange(160, 200), np.arange(200, 240)


@pytest.fixture(scope="module")
def catalog():
    torch.set_num_threads(1)
    return make_synthetic_catalog(n_tracks=240, seed=0)


def _data(catalog, rows):
    return TrainingData(
        patches=[catalog.patches[i] for i in rows], logmels=[catalog.logmels[i] for i in rows],
        caption_embeddings=[catalog.caption_embeddings[i] for i in rows],
        caption_weights=[catalog.caption_weights[i] for i in rows],
        labels=np.array([int(s[1:]) for s in catalog.style[rows]]),
    )


def test_text_training_lowers_loss_and_beats_untrained_features(catalog):
    steps = []
    result = train_crossmusim(_data(catalog, TRAIN), TrainConfig(steps=150, batch_size=32, eval_every=50),
                              progress=lambda step, total, loss: steps.append((step, total)),
                              validator=retrieval_validator(_data(catalog, VAL), catalog.labels(VAL)))
    assert steps[0] == (1, 150) and steps[-1] == (150, 150)
    assert np.mean(result.losses[-10:]) < 0.6 * np.mean(result.losses[:10])
    assert [s for s, _ in result.val_history] == [50, 100, 150] and result.best_step in (50, 100, 150)
    test = _data(catalog, TEST)
    trained = evaluate_embeddings(embed_audio(result.model, pool_many(test.patches)), catalog.labels(TEST))
    untrained = evaluate_embeddings(baseline_embeddings(pool_many(test.patches)), catalog.labels(TEST))
    assert trained["xinst_style_p10"] > untrained["xinst_style_p10"] + 0.15
    # text -> audio search works in the shared space
    text = embed_text(result.model, np.stack([catalog.caption_embeddings[i][0] for i in TEST]))
    recall = evaluate_embeddings(embed_audio(result.model, pool_many(test.patches)), catalog.labels(TEST),
                                 text, np.arange(len(TEST)))
    assert recall["t2a_r10"] > 0.3 > 10 / len(TEST) - 0.05


def test_training_is_deterministic_by_seed(catalog):
    data = _data(catalog, TRAIN)
    a = train_crossmusim(data, TrainConfig(steps=20, batch_size=32, seed=3))
    b = train_crossmusim(data, TrainConfig(steps=20, batch_size=32, seed=3))
    c = train_crossmusim(data, TrainConfig(steps=20, batch_size=32, seed=4))
    assert a.losses == b.losses and a.losses != c.losses


def test_checkpoint_resume_equals_uninterrupted_run(catalog, tmp_path):
    data = _data(catalog, TRAIN)
    straight = train_crossmusim(data, TrainConfig(steps=30, batch_size=32, seed=1))

    class SimulatedCrashError(Exception):
        pass

    def stop_after_20(step, total, loss):
        if step == 21:
            raise SimulatedCrashError

    config = TrainConfig(steps=30, batch_size=32, seed=1, checkpoint_path=str(tmp_path / "run.pt"),
                         checkpoint_every=10)
    with pytest.raises(SimulatedCrashError):
        train_crossmusim(data, config, progress=stop_after_20)
    resumed = train_crossmusim(data, config)
    assert resumed.resumed_from_step == 20 and resumed.steps_done == 30
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-5)
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)
    reloaded = load_model(tmp_path / "run.pt")
    features = pool_many(data.patches[:5])
    np.testing.assert_allclose(embed_audio(reloaded, features), embed_audio(resumed.model, features), atol=1e-6)


def test_reference_objectives_and_scratch_tower_train(catalog, tmp_path):
    data = _data(catalog, TRAIN)
    for objective in ("simclr", "supervised"):
        result = train_crossmusim(data, TrainConfig(objective=objective, steps=40, batch_size=32))
        assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    scratch = CrossMuSimConfig(audio=AudioTowerConfig(kind="scratch_cnn", scratch=ScratchCNNConfig(crop_frames=48)))
    result = train_crossmusim(data, TrainConfig(steps=25, batch_size=32, model=scratch))
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    test = _data(catalog, TEST)
    embeddings = embed_audio(result.model, test.logmels)
    assert embeddings.shape == (len(TEST), 128) and np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    save_checkpoint(tmp_path / "scratch.pt", result.model)
    np.testing.assert_allclose(embed_audio(load_model(tmp_path / "scratch.pt"), test.logmels[:3]), embeddings[:3],
                               atol=1e-5)
    untrained = untrained_cnn_embeddings(test.logmels, ScratchCNNConfig(n_mels=32, crop_frames=48))
    assert untrained.shape[0] == len(TEST)


def test_bad_input_raises_clear_errors(catalog):
    with pytest.raises(ValueError, match="patches"):
        train_crossmusim(TrainingData(logmels=catalog.logmels[:4]), TrainConfig(steps=1))
    with pytest.raises(ValueError, match="description"):
        data = _data(catalog, TRAIN[:4])
        data.caption_embeddings = [e[:0] for e in data.caption_embeddings]
        train_crossmusim(data, TrainConfig(steps=1))
    with pytest.raises(ValueError, match="labels"):
        train_crossmusim(TrainingData(patches=catalog.patches[:4]), TrainConfig(objective="supervised", steps=1))
    with pytest.raises(ValueError, match="unknown objective 'triplet'"):
        train_crossmusim(_data(catalog, TRAIN[:4]), TrainConfig(objective="triplet", steps=1))
