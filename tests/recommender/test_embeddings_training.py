"""train_baseline / train_crossmusim / index_embeddings / activate_model on a tiny described catalog."""

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from recommender.models import EmbeddingModel, TrackEmbedding
from recommender.selectors import active_model_for_arm
from recommender.services.embedding_runtime import text_embed
from recommender.services.search import nearest_tracks_to_vector
from tests.recommender.embeddings_fixtures import described_catalog, one_torch_thread  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_torch_thread")]

BACKBONE = "SYNTH_features"


@pytest.fixture
def catalog(settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    return described_catalog(80, BACKBONE)


def test_train_crossmusim_registers_a_version_with_metrics_then_indexes_and_searches(catalog, capsys):
    call_command("train_crossmusim", "--backbone", BACKBONE, "--steps", "60", "--seed", "1", "--batch-size", "32")
    model = EmbeddingModel.objects.get(kind="crossmusim")
    assert (model.name, model.version) == ("crossmusim", 1)
    metrics = model.metrics
    assert metrics["steps_done"] == 60 and metrics["loss_last"] < metrics["loss_first"]
    assert set(metrics["test"]) >= {"style_p10", "xinst_style_p10", "mode_p10", "t2a_r10"}
    # Text guidance must beat the timbre-led pooled features on cross-instrument style retrieval.
    assert metrics["test"]["xinst_style_p10"] > metrics["baseline_test"]["xinst_style_p10"]
    assert Path(model.checkpoint_path).exists()
    out = capsys.readouterr().out
    assert "registered crossmusim v1" in out

    call_command("index_embeddings", "crossmusim", "--activate-arm", "crossmusim")
    model.refresh_from_db()
    assert model.indexed_at is not None and active_model_for_arm("crossmusim") == model
    assert TrackEmbedding.objects.filter(model=model).count() == len(catalog)
    hits = nearest_tracks_to_vector(model, text_embed(model, ["a lively jig tune"])[0], k=10)
    assert sum(hit.track.labels["style"] == "jig" for hit in hits) >= 8

    call_command("train_crossmusim", "--backbone", BACKBONE, "--steps", "10", "--seed", "2")
    assert EmbeddingModel.objects.get(kind="crossmusim", version=2).metrics["steps_done"] == 10


def test_train_crossmusim_resumes_from_its_checkpoint(catalog, capsys):
    call_command("train_crossmusim", "--backbone", BACKBONE, "--steps", "20", "--seed", "3", "--name", "resumable")
    call_command("train_crossmusim", "--backbone", BACKBONE, "--steps", "30", "--seed", "3", "--name", "resumable",
                 "--resume")
    second = EmbeddingModel.objects.get(name="resumable", version=2)
    assert second.metrics["resumed_from_step"] == 20 and second.metrics["steps_done"] == 30
    assert "resumed from step 20" in capsys.readouterr().out


def test_train_baseline_registers_pooled_features_and_activation_swaps(catalog, capsys):
    call_command("train_baseline", "--backbone", BACKBONE)
    baseline = EmbeddingModel.objects.get(kind="baseline")
    assert baseline.dim == 48 and baseline.config["backbone"] == BACKBONE
    assert set(baseline.metrics["val_choices"]) == {"all", "all+z"} and baseline.metrics["chosen"] in {"all", "all+z"}
    assert 0 < baseline.metrics["test"]["style_p10"] <= 1
    with pytest.raises(CommandError, match="no index"):
        call_command("activate_model", str(baseline.pk), "--arm", "baseline")
    call_command("index_embeddings", f"{baseline.name}:1")
    call_command("activate_model", str(baseline.pk), "--arm", "baseline")
    assert active_model_for_arm("baseline") == baseline
    with pytest.raises(CommandError, match="no embedding model"):
        call_command("activate_model", "nonexistent:3", "--arm", "baseline")


def test_training_without_descriptions_or_split_fails_with_a_reason(settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    with pytest.raises(CommandError, match="no dataset split named 'default'"):
        call_command("train_crossmusim", "--backbone", BACKBONE, "--steps", "5")
