"""The whole model path on the tiny demo catalog: real audio, real musicnn, real descriptions.

Musicnn features are cached by audio checksum under var/test-embeddings/, so only the first
run on a machine pays for extraction (~1-2 s a track); later runs take seconds.
"""

import pytest
from django.core.management import call_command

from recommender.models import EmbeddingModel, TrackEmbedding
from recommender.services.descriptions import mine_descriptions, source_descriptions
from recommender.services.embeddings import embedding_model_activate
from recommender.services.search import text_search
from tests.recommender.embeddings_fixtures import one_torch_thread, persistent_features  # noqa: F401 - fixtures

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_torch_thread", "persistent_features")]


def test_demo_catalog_trains_indexes_and_searches(tiny_demo_catalog, capsys):
    tracks = tiny_demo_catalog.tracks
    source_descriptions(sources="metadata,document")
    mine_descriptions()
    call_command("extract_audio_features")
    assert "0 skipped" in capsys.readouterr().out

    call_command("train_baseline")
    baseline = EmbeddingModel.objects.get(kind="baseline")
    # chosen on val among musicnn's pooled views that fit an HNSW index (<= 2,000 dims)
    assert set(baseline.metrics["val_choices"]) == {"all", "all+z", "mean_pool", "mean_pool+z", "max_pool",
                                                    "max_pool+z"}
    assert baseline.config["feature_view"] in {"mean_pool", "max_pool"} and baseline.dim == 1506
    assert 0 <= baseline.metrics["test"]["style_p10"] <= 1

    call_command("train_crossmusim", "--steps", "40", "--seed", "0")
    model = EmbeddingModel.objects.get(kind="crossmusim")
    assert model.metrics["loss_last"] < model.metrics["loss_first"]
    assert "timbre_views" not in model.metrics  # off by default (docs/model.md: they cost the default split)
    # the option: every training track heard through a timbre view (real audio, augmentation, musicnn; one view
    # here to keep the test short, the option's own choice is 2)
    call_command("train_crossmusim", "--steps", "20", "--seed", "0", "--timbre-views", "1", "--name", "timbre")
    views = EmbeddingModel.objects.get(name="timbre").metrics["timbre_views"]
    assert (views["per_track"], views["view_probability"]) == (1, 0.5)
    assert views["tracks_with_views"] == model.metrics["n_tracks"]["train"] > 0  # computed once, cached after
    assert "timbre views not made" not in capsys.readouterr().err
    assert {"xinst_style_p10", "t2a_r10"} <= set(model.metrics["test"])

    call_command("index_embeddings", str(model.pk), "--activate-arm", "crossmusim")
    assert TrackEmbedding.objects.filter(model=model).count() == len(tracks)
    result = text_search("a lively jig for fiddle", k=5)
    assert result.model == model and len(result.hits) == 5
    assert {hit.track.pk for hit in result.hits} <= {t.pk for t in tracks}

    call_command("index_embeddings", str(baseline.pk))
    baseline.refresh_from_db()
    embedding_model_activate(model=baseline, arm="baseline")
    assert TrackEmbedding.objects.filter(model=baseline).count() == len(tracks)
    assert "no HNSW index" not in capsys.readouterr().err
