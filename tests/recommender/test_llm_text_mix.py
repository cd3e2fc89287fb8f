"""Which text a CrossMuSim run may train on, and how the platform reaches the local LLM when no endpoint is set."""

from __future__ import annotations

import pytest

from recommender.crossmusim.descriptions import text_hash
from recommender.models import Description
from recommender.selectors import kept_descriptions
from recommender.services.descriptions import llm_config_from_settings, llm_perspectives_from_settings
from recommender.services.embedding_training import text_mix_candidates
from tests.recommender.descriptions_fixtures import make_track


def describe(track, source: str, text: str) -> None:
    Description.objects.create(track=track, source=source, origin=f"{source}:{text[:10]}", text=text,
                               text_hash=text_hash(text), kept=True, score=0.5, perspective="style")


@pytest.mark.django_db
def test_a_mix_is_a_candidate_when_it_covers_half_the_train_tracks():
    tracks = [make_track(f"Tune {i}") for i in range(4)]
    for track in tracks:
        describe(track, "metadata", f"A bright reel number {track.pk} in G major.")
    assert set(text_mix_candidates(tracks)) == {"templates"}  # no LLM text: "both" would be "templates" again
    describe(tracks[0], "llm", "A fiddle tune from the west of Ireland, quick and light.")
    assert set(text_mix_candidates(tracks)) == {"templates", "both"}  # the LLM covers 1 of 4
    describe(tracks[1], "llm", "A reel for dancers, driving and bright, played on the fiddle.")
    candidates = text_mix_candidates(tracks)
    assert set(candidates) == {"templates", "llm", "both"}
    assert candidates["llm"]["coverage"] == 0.5 and candidates["both"]["coverage"] == 1.0
    assert set(candidates["llm"]["descriptions"]) == {tracks[0].pk, tracks[1].pk}
    assert len(kept_descriptions(["llm", "metadata"])[tracks[0].pk]) == 2
    assert set(text_mix_candidates(tracks, "llm")) == {"llm"}
    with pytest.raises(ValueError, match="unknown text mix"):
        text_mix_candidates(tracks, "gpt")


def test_without_an_endpoint_the_client_talks_to_the_local_model(settings):
    settings.LLM_BASE_URL = ""
    settings.LLM_LOCAL = True
    settings.LLM_LOCAL_MAX_BATCH = 16
    config = llm_config_from_settings(start_local=False)
    assert config.model == "SmolLM2-135M-Instruct-Q4_1" and config.concurrency == 16 and config.json_mode
    assert config.api_key == "" and config.timeout_s >= 600
    settings.LLM_LOCAL = False
    assert llm_config_from_settings(start_local=False) is None
    settings.LLM_BASE_URL = "http://localhost:11434/v1"
    settings.LLM_MODEL = "llama3.2"
    endpoint = llm_config_from_settings()
    assert endpoint.base_url == "http://localhost:11434/v1" and endpoint.model == "llama3.2"


def test_perspectives_from_settings(settings):
    settings.LLM_PERSPECTIVES = ""
    assert llm_perspectives_from_settings() == ("style", "mood", "instrumentation", "rhythm", "context")
    assert llm_perspectives_from_settings("mood, style") == ("style", "mood")
    with pytest.raises(ValueError, match="unknown perspective"):
        llm_perspectives_from_settings("style,vibes")


@pytest.mark.django_db
def test_the_text_mix_is_chosen_on_validation_and_recorded(settings, tmp_path):
    """Templates that name each track's style against LLM text that names a style drawn at random (a hallucinating
    model): validation must not score the LLM's text higher, and must not pick it."""
    import numpy as np
    import torch
    from django.core.management import call_command

    from recommender.models import EmbeddingModel
    from tests.recommender.embeddings_fixtures import STYLES, described_catalog

    torch.set_num_threads(1)
    settings.MODELS_DIR = tmp_path
    tracks = described_catalog(160, "SYNTH_features")
    rng = np.random.default_rng(7)
    for track in tracks:
        describe(track, "llm", f"a lively {STYLES[rng.integers(len(STYLES))]} tune for an evening of music")
    call_command("train_crossmusim", "--backbone", "SYNTH_features", "--steps", "80", "--seed", "1",
                 "--batch-size", "32")
    model = EmbeddingModel.objects.get(kind="crossmusim")
    scores = model.metrics["text_mix_val"]
    assert set(scores) == {"templates", "llm", "both"}
    assert model.metrics["text_mix_coverage"] == {"templates": 1.0, "llm": 1.0, "both": 1.0}
    assert scores[model.config["text_mix"]] == max(scores.values())
    # on this easy synthetic catalog every mix may reach the same validation score: a tie goes to the templates
    assert scores["templates"] >= scores["llm"] and model.config["text_mix"] != "llm"
    assert model.config["text_mix_sources"] == (["metadata", "document", "web"] if model.config["text_mix"] ==
                                                "templates" else ["all"])


@pytest.mark.django_db
def test_the_llm_text_job_sources_mines_retrains_and_resumes(settings, tmp_path):
    """recommender.llm_text_run against a local Chat Completions server: every track gets LLM text, the model
    records its mix, serves the arm only when the mix holds LLM text, and a second run asks nothing again."""
    import torch

    from recommender.models import EmbeddingModel
    from recommender.selectors import active_model_for_arm
    from recommender.services.llm_text import llm_text_run
    from tests.recommender.descriptions_fixtures import RecordingServer, llm_routes
    from tests.recommender.embeddings_fixtures import described_catalog

    torch.set_num_threads(1)
    settings.MODELS_DIR = tmp_path / "models"
    settings.LLM_CACHE_DIR = tmp_path / "llm"
    tracks = described_catalog(80, "SYNTH_features")
    server = RecordingServer(llm_routes()).start()
    try:
        settings.LLM_BASE_URL = server.base_url + "/v1"
        out = llm_text_run(perspectives=["style"], steps=60, progress=False, backbone="SYNTH_features")
        assert server.count("/v1/chat/completions") == len(tracks)
        assert Description.objects.filter(source="llm").values("track").distinct().count() == len(tracks)
        assert out["llm"]["kept"] > 0 and out["sourcing"]["per_source"]["llm"]["units_run"] == len(tracks)
        model = EmbeddingModel.objects.get(kind="crossmusim")
        assert out["text_mix"] == model.config["text_mix"] and model.config["text_mix"] in model.metrics["text_mix_val"]
        serving = active_model_for_arm("crossmusim")
        assert (serving == model) == (model.config["text_mix"] in ("llm", "both"))
        again = llm_text_run(perspectives=["style"], steps=60, progress=False, backbone="SYNTH_features")
        assert server.count("/v1/chat/completions") == len(tracks)  # resumed: every unit was done
        assert again["sourcing"]["per_source"]["llm"]["units_skipped"] == len(tracks)
    finally:
        server.stop()
