"""The listening room: what each arm recommends around a seed, why each track, and each model's card.

Everything here goes through the code the API uses: the seed is found with ``text_search``
(``GET /api/v1/search``) or by title, every list is ``vector_search.nearest_to_track`` (the KNN
that serves ``GET /api/v1/recommendations``), so the page shows what a player of that arm gets.

"Why": for a recommended track, the kept description of that track that lies closest to the
seed in a cross-modal model's shared space, i.e. the cosine between the text tower's embedding of
each description and the seed's audio vector as indexed in pgvector. A model without a text tower
(the baseline) has no shared space, so its lists are explained in the crossmusim arm's space, and
the page says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from recommender.models import Description, EmbeddingModel, Track
from recommender.selectors import (
    ModelNotFoundError,
    active_model_for_arm,
    embedding_model_get,
    kept_descriptions_of,
    track_vector,
    tracks_by_title,
    tracks_in_bulk,
    training_text_mix,
)
from recommender.services.audio import audio_problem
from recommender.services.search import SearchUnavailableError, TrackHit, text_search
from recommender.vector_search import SeedNotIndexedError, VectorSpace, nearest_to_track

K = 10
ARMS = (EmbeddingModel.Kind.BASELINE, EmbeddingModel.Kind.CROSSMUSIM)
# Offline metrics of the registry shown on a card: (key in metrics["test"], label).
CARD_METRICS = (("style_p10", "style P@10"), ("xinst_style_p10", "cross-instrument style P@10"),
                ("t2a_r1", "text→audio R@1"), ("t2a_r10", "text→audio R@10"))
SOURCE_LABELS = dict(Description.Source.choices)


# --- placements: who else serves a model (registered by apps that build on recommender) -------------------------

PlacementSource = Callable[[Sequence[int]], dict[int, list[str]]]
_placement_sources: list[PlacementSource] = []


def register_placement_source(source: PlacementSource) -> None:
    """Let an app that places models (experiments: its variants) name those placements on the model cards.

    recommender never imports experiments (import-linter contract); experiments registers here from its
    ``AppConfig.ready`` instead, so the card can say "variant treatment of experiment X" all the same."""
    if source not in _placement_sources:
        _placement_sources.append(source)


def model_placements(model_ids: Sequence[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for source in _placement_sources:
        for model_id, lines in source(model_ids).items():
            found.setdefault(model_id, []).extend(lines)
    return found


# --- results ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Why:
    """The kept description of a recommended track closest to the seed, and where that was measured."""

    description_id: int
    text: str
    source: str
    similarity: float  # cosine(text tower(description), seed's audio vector)
    space: str  # the model whose shared space it was measured in

    @property
    def source_label(self) -> str:
        return SOURCE_LABELS.get(self.source, self.source)


@dataclass
class Item:
    position: int
    track: Track
    score: float  # cosine similarity to the seed in the column's model
    audio_problem: str | None
    why: Why | None = None
    shared_with: list[str] = field(default_factory=list)  # headings of the other columns that list it


@dataclass
class Column:
    key: str  # "baseline", "crossmusim" or "model-<id>"
    heading: str
    model: EmbeddingModel | None
    items: list[Item] = field(default_factory=list)
    error: str | None = None
    why_space: EmbeddingModel | None = None
    why_error: str | None = None


@dataclass
class ModelCard:
    model: EmbeddingModel
    serves: list[str]
    metrics: list[tuple[str, float]]
    text_mix: dict[str, int] | None  # None: an audio-only model, trained on no text


@dataclass
class Search:
    query: str
    title_matches: list[Track]
    text_hits: list[TrackHit]
    text_model: EmbeddingModel | None
    text_error: str | None
    audio_problems: dict[int, str | None]


@dataclass
class Room:
    search: Search | None
    seed: Track | None
    seed_audio_problem: str | None
    seed_error: str | None
    columns: list[Column]
    cards: list[ModelCard]


# --- why ----------------------------------------------------------------------------------------------------------

class WhyUnavailableError(RuntimeError):
    """No shared space to explain in (no cross-modal model, seed not indexed in it, checkpoint missing)."""


def explaining_model(model: EmbeddingModel) -> EmbeddingModel | None:
    """The cross-modal model whose shared space explains ``model``'s list: itself, else the crossmusim arm's."""
    if model.kind == EmbeddingModel.Kind.CROSSMUSIM:
        return model
    return active_model_for_arm(EmbeddingModel.Kind.CROSSMUSIM)


def closest_descriptions(model: EmbeddingModel, seed_track_id: int, track_ids: Sequence[int]) -> dict[int, Why]:
    """track id -> its kept description closest to the seed's audio in ``model``'s shared space.

    One batch through the text tower for all the tracks' descriptions (a page's 20-30 tracks hold
    60-150 texts). Tracks without kept descriptions are left out of the answer.
    """
    from recommender.services.embedding_runtime import CheckpointError, NotCrossModalError, text_embed

    seed = track_vector(model, seed_track_id)
    if seed is None:
        raise WhyUnavailableError(f"the seed has no vector in {model}")
    described = kept_descriptions_of(track_ids)
    rows = [row for track_id in track_ids for row in described.get(track_id, [])]
    if not rows:
        return {}
    try:
        texts = text_embed(model, [row.text for row in rows])
    except (NotCrossModalError, CheckpointError) as error:
        raise WhyUnavailableError(str(error)) from error
    similarity = cosine_to(np.asarray(seed, dtype=np.float32), texts)
    best: dict[int, Why] = {}
    for row, score in zip(rows, similarity, strict=True):
        current = best.get(row.track_id)
        if current is None or score > current.similarity:
            best[row.track_id] = Why(description_id=row.pk, text=row.text, source=row.source,
                                     similarity=float(score), space=str(model))
    return best


def cosine_to(vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row to ``vector`` (towers normalise, but a registered model need not)."""
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(vector)
    return (rows @ vector) / np.where(norms > 0, norms, 1.0)


# --- the room -----------------------------------------------------------------------------------------------------

def search_tracks(query: str) -> Search:
    """Seeds for a query: titles (and artists) that contain it, and the text search of the crossmusim arm."""
    title_matches = tracks_by_title(query, K)
    hits, model, error = [], None, None
    try:
        result = text_search(query, K)
        hits, model = result.hits, result.model
    except SearchUnavailableError as unavailable:
        error = unavailable.reason
    shown = {t.pk: t for t in title_matches} | {hit.track.pk: hit.track for hit in hits}
    return Search(query=query, title_matches=title_matches, text_hits=hits, text_model=model, text_error=error,
                  audio_problems={pk: audio_problem(track) for pk, track in shown.items()})


def _columns(extra_model_id: int | None) -> list[Column]:
    columns = []
    for arm in ARMS:
        model = active_model_for_arm(arm)
        columns.append(Column(key=str(arm), heading=f"{arm} arm", model=model,
                              error=None if model else f"no model is active for the {arm} arm"))
    if extra_model_id is not None and extra_model_id not in {c.model.pk for c in columns if c.model}:
        try:
            model = embedding_model_get(extra_model_id)
            columns.append(Column(key=f"model-{model.pk}", heading=str(model), model=model))
        except ModelNotFoundError as error:
            columns.append(Column(key=f"model-{extra_model_id}", heading=f"model {extra_model_id}", model=None,
                                  error=str(error)))
    return columns


def _fill(column: Column, seed_track_id: int) -> None:
    try:
        neighbours = nearest_to_track(VectorSpace.of(column.model), seed_track_id, K)
    except SeedNotIndexedError as error:
        column.error = str(error)
        return
    tracks = tracks_in_bulk([n.track_id for n in neighbours])
    column.items = [Item(position=n, track=tracks[hit.track_id], score=hit.score,
                         audio_problem=audio_problem(tracks[hit.track_id]))
                    for n, hit in enumerate(neighbours, 1) if hit.track_id in tracks]


def _explain(columns: list[Column], seed_track_id: int) -> None:
    """Fill each item's "why", one text-tower batch per explaining model."""
    by_space: dict[int, tuple[EmbeddingModel, list[Column]]] = {}
    for column in columns:
        if column.model is None or column.error:
            continue
        space = explaining_model(column.model)
        if space is None:
            column.why_error = "no cross-modal model is active for the crossmusim arm: no shared space to explain in"
            continue
        column.why_space = space
        by_space.setdefault(space.pk, (space, []))[1].append(column)
    for space, grouped in by_space.values():
        track_ids = sorted({item.track.pk for column in grouped for item in column.items})
        try:
            whys = closest_descriptions(space, seed_track_id, track_ids)
        except WhyUnavailableError as error:
            for column in grouped:
                column.why_error = str(error)
            continue
        for column in grouped:
            for item in column.items:
                item.why = whys.get(item.track.pk)


def _mark_shared(columns: list[Column]) -> None:
    listed: dict[int, list[str]] = {}
    for column in columns:
        for item in column.items:
            listed.setdefault(item.track.pk, []).append(column.heading)
    for column in columns:
        for item in column.items:
            item.shared_with = [h for h in listed[item.track.pk] if h != column.heading]


def model_card(model: EmbeddingModel, placements: Sequence[str] = ()) -> ModelCard:
    serves = [f"the {model.active_for_arm} arm"] if model.active_for_arm else []
    test = (model.metrics or {}).get("test", {})
    metrics = [(label, float(test[key])) for key, label in CARD_METRICS if test.get(key) is not None]
    text_mix = training_text_mix(model) if model.kind == EmbeddingModel.Kind.CROSSMUSIM else None
    return ModelCard(model=model, serves=serves + list(placements), metrics=metrics, text_mix=text_mix)


def model_cards(models: Sequence[EmbeddingModel]) -> list[ModelCard]:
    unique = list({m.pk: m for m in models}.values())
    placed = model_placements([m.pk for m in unique])
    return [model_card(m, placed.get(m.pk, ())) for m in unique]


def listening_room(*, query: str = "", seed_track_id: int | None = None,
                   extra_model_id: int | None = None) -> Room:
    """Everything the page shows: the search's seeds, the seed, one column per arm (+ a chosen model), cards."""
    search = search_tracks(query) if query else None
    columns = _columns(extra_model_id)
    seed, seed_problem, seed_error = None, None, None
    if seed_track_id is not None:
        seed = tracks_in_bulk([seed_track_id]).get(seed_track_id)
        if seed is None:
            seed_error = f"no track {seed_track_id} in the catalog"
        else:
            seed_problem = audio_problem(seed)
            for column in columns:
                if column.model is not None:
                    _fill(column, seed.pk)
            _explain(columns, seed.pk)
            _mark_shared(columns)
    cards = model_cards([c.model for c in columns if c.model is not None])
    return Room(search=search, seed=seed, seed_audio_problem=seed_problem, seed_error=seed_error,
                columns=columns if seed is not None else [], cards=cards)
