"""A variant names its model by arm, id, name or name:version (one lookup shared with the recommender app)."""

import pytest

from experiments.services import ExperimentError, resolve_embedding_model
from recommender.models import EmbeddingModel


@pytest.fixture
def models(db):
    first = EmbeddingModel.objects.create(name="cm", version=1, kind="crossmusim", dim=8)
    second = EmbeddingModel.objects.create(name="cm", version=2, kind="crossmusim", dim=8)
    baseline = EmbeddingModel.objects.create(name="base", version=1, kind="baseline", dim=8,
                                             active_for_arm="baseline")
    return first, second, baseline


def test_every_kind_of_reference_resolves(models):
    first, second, baseline = models
    assert resolve_embedding_model("baseline") == baseline
    assert resolve_embedding_model(str(first.pk)) == first
    assert resolve_embedding_model("cm") == second
    assert resolve_embedding_model(" cm:1 ") == first


def test_unknown_reference_is_an_experiment_error_with_the_reason(models):
    with pytest.raises(ExperimentError, match="cm:9"):
        resolve_embedding_model("cm:9")
    with pytest.raises(ExperimentError, match="crossmusim"):
        resolve_embedding_model("crossmusim")  # no model is active for that arm, and none is named so
