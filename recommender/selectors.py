"""Reads of the recommender app: catalog pages and embedding models (the KNN is ``recommender.vector_search``).

Views and commands call these instead of building querysets themselves, so that every
read of an embedding model goes through one place (HackSoft "selectors").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Length

from recommender.models import DatasetSplit, Description, EmbeddingModel, Track, TrackEmbedding

MODEL_SPEC = re.compile(r"^(?P<name>[^:]+?)(?::v?(?P<version>\d+))?$")


class ModelNotFoundError(LookupError):
    """No embedding model matches the given id or name[:version]."""


def embedding_model_get(spec: str | int) -> EmbeddingModel:
    """The model named by ``spec``: a primary key, ``name`` (latest version) or ``name:version``."""
    text = str(spec).strip()
    if text.isdigit():
        model = EmbeddingModel.objects.filter(pk=int(text)).first()
        if model is not None:
            return model
    match = MODEL_SPEC.match(text)
    if match is None:
        raise ModelNotFoundError(f"{spec!r} is not a model id or name[:version]")
    queryset = EmbeddingModel.objects.filter(name=match["name"])
    if match["version"]:
        queryset = queryset.filter(version=int(match["version"]))
    model = queryset.order_by("-version").first()
    if model is None:
        known = ", ".join(str(m) for m in EmbeddingModel.objects.order_by("name", "version")[:20]) or "none"
        raise ModelNotFoundError(f"no embedding model {spec!r} (known: {known})")
    return model


def embedding_model_list() -> QuerySet[EmbeddingModel]:
    return EmbeddingModel.objects.order_by("name", "version")


def embedding_model_next_version(name: str) -> int:
    latest = EmbeddingModel.objects.filter(name=name).order_by("-version").values_list("version", flat=True).first()
    return (latest or 0) + 1


def active_model_for_arm(arm: str) -> EmbeddingModel | None:
    return EmbeddingModel.objects.filter(active_for_arm=arm).first()


def track_list() -> QuerySet[Track]:
    return Track.objects.order_by("id").only("id", "title", "artist", "album", "labels", "duration_s")


def tracks_for_ids(track_ids: Sequence[int] | None = None) -> QuerySet[Track]:
    """All tracks, or the given ones, in id order."""
    queryset = Track.objects.order_by("id")
    return queryset.filter(pk__in=list(track_ids)) if track_ids else queryset


def split_parts(name: str = "default") -> dict[int, str]:
    """track id -> "train" / "val" / "test" for one named split."""
    return dict(DatasetSplit.objects.filter(name=name).values_list("track_id", "part"))


def kept_descriptions(sources: Sequence[str] | None = None) -> dict[int, list[tuple[str, float, str]]]:
    """track id -> [(text, score, perspective)] of the descriptions the miner kept: the training text
    (of ``sources`` only, when given)."""
    texts: dict[int, list[tuple[str, float, str]]] = {}
    rows = Description.objects.filter(kept=True)
    if sources is not None:
        rows = rows.filter(source__in=list(sources))
    rows = rows.order_by("track_id", "id").values_list("track_id", "text", "score", "perspective")
    for track_id, text, score, perspective in rows:
        texts.setdefault(track_id, []).append((text, 1.0 if score is None else float(score), perspective or ""))
    return texts


def llm_text_model_exists() -> bool:
    """Whether a CrossMuSim model trained with LLM text in its mix exists (the LLM text job is done)."""
    return EmbeddingModel.objects.filter(kind=EmbeddingModel.Kind.CROSSMUSIM,
                                         config__text_mix__in=["llm", "both"]).exists()


def all_track_labels() -> list[dict]:
    return [labels or {} for labels in Track.objects.values_list("labels", flat=True)]


def model_embedding_count(model: EmbeddingModel) -> int:
    return TrackEmbedding.objects.filter(model=model).count()


# --- the listening room (recommender/services/listening.py) -----------------------------------------------------

def tracks_by_title(query: str, limit: int = 10) -> list[Track]:
    """Tracks whose title or artist contains ``query`` (case-insensitive), shortest titles first."""
    return list(Track.objects.filter(Q(title__icontains=query) | Q(artist__icontains=query))
                .order_by(Length("title"), "title", "id")[:limit])


def tracks_in_bulk(track_ids: Sequence[int]) -> dict[int, Track]:
    return Track.objects.in_bulk(list(track_ids))


def kept_descriptions_of(track_ids: Sequence[int]) -> dict[int, list[Description]]:
    """track id -> its kept descriptions (text, source, perspective), in id order."""
    found: dict[int, list[Description]] = {}
    rows = (Description.objects.filter(kept=True, track_id__in=list(track_ids)).order_by("track_id", "id")
            .only("id", "track_id", "text", "source", "perspective"))
    for row in rows:
        found.setdefault(row.track_id, []).append(row)
    return found


def track_vector(model: EmbeddingModel, track_id: int):
    """The track's vector in ``model`` (a numpy array), or None when the model has not indexed it."""
    return (TrackEmbedding.objects.filter(model=model, track_id=track_id)
            .values_list("embedding", flat=True).first())


def indexed_embedding_models() -> list[EmbeddingModel]:
    """Models with vectors in pgvector, the ones a KNN can run in."""
    return list(EmbeddingModel.objects.filter(indexed_at__isnull=False).order_by("name", "version"))


def training_text_mix(model: EmbeddingModel) -> dict[str, int]:
    """Kept descriptions of the model's training tracks (the train part of its split), counted by source.

    Read now, not frozen at training time: re-mining after training changes it."""
    split = (model.config or {}).get("split", "default")
    train_ids = DatasetSplit.objects.filter(name=split, part=DatasetSplit.Part.TRAIN).values("track_id")
    rows = (Description.objects.filter(kept=True, track_id__in=train_ids).values("source")
            .annotate(n=Count("id")).order_by("-n", "source"))
    return {row["source"]: row["n"] for row in rows}
