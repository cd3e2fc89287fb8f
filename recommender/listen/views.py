"""The listening room's two views: the staff page, and a track's audio by id with HTTP ranges.

Thin: the page parses its query string, calls ``recommender.services.listening`` once and shapes
plain cells for the template; the audio view asks ``recommender.services.audio`` for the file and
the byte range and writes the answer.

Access: both are ``staff_member_required``, i.e. a logged-in staff *session*. An API key is not a
session, so a player's ``Authorization: Api-Key ...`` request is anonymous here and, like any
anonymous request, is redirected (302) to the admin login: it never gets the page or a byte of audio.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import get_conditional_response
from django.views.decorators.http import require_safe

from recommender.selectors import indexed_embedding_models
from recommender.serializers import SearchQuerySerializer
from recommender.services.audio import (
    CACHE_CONTROL,
    AudioFile,
    AudioUnavailableError,
    RangeNotSatisfiableError,
    audio_file,
    if_range_allows,
    parse_range,
)
from recommender.services.listening import Column, Item, ModelCard, Room, listening_room

MAX_ID = 2**63 - 1


def _track_id(value: str | None, name: str, errors: list[str]) -> int | None:
    if value in (None, ""):
        return None
    if value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ID:
        return int(value)
    errors.append(f"{name} must be an id (a positive integer), not {value[:40]!r}")
    return None


def _query(value: str, errors: list[str]) -> str:
    """The search text, validated as ``GET /api/v1/search`` validates its ``q``."""
    if not value.strip():
        return ""
    params = SearchQuerySerializer(data={"q": value})
    if params.is_valid():
        return params.validated_data["q"]
    errors.extend(f"search: {' '.join(str(m) for m in messages)}" for messages in params.errors.values())
    return ""


def _labels(labels: dict | None) -> dict[str, str]:
    labels = labels or {}
    instruments = labels.get("instruments") or []
    if isinstance(instruments, str):
        instruments = [instruments]
    return {"style": str(labels.get("style", "")), "ensemble": str(labels.get("ensemble", "")),
            "instruments": ", ".join(str(i) for i in instruments)}


def _track(track, problem: str | None) -> dict:
    return {"id": track.pk, "title": track.title, "artist": track.artist, **_labels(track.labels),
            "audio_url": reverse("listening-audio", args=[track.pk]), "audio_problem": problem or "",
            "duration": f"{int(track.duration_s // 60)}:{int(track.duration_s % 60):02d}"}


def _item(item: Item) -> dict:
    why = item.why
    return {"position": item.position, "score": f"{item.score:.3f}", "track": _track(item.track, item.audio_problem),
            "shared_with": item.shared_with,
            "why": {"text": why.text, "source": why.source, "source_label": why.source_label,
                    "similarity": f"{why.similarity:.3f}", "description_id": why.description_id} if why else None}


def _column(column: Column) -> dict:
    space = column.why_space
    return {"key": column.key, "heading": column.heading, "model": str(column.model) if column.model else "",
            "model_id": column.model.pk if column.model else "", "error": column.error or "",
            "items": [_item(i) for i in column.items],
            "why_note": (f"why: the track's kept description closest to the seed in {space}'s shared space"
                         + ("" if space == column.model else f" ({column.model} has no text tower)")) if space else "",
            "why_error": column.why_error or ""}


def _card(card: ModelCard) -> dict:
    model = card.model
    mix = card.text_mix
    return {
        "id": model.pk, "label": str(model), "kind": model.kind, "name": model.name, "version": model.version,
        "tower": model.tower, "dim": model.dim, "serves": card.serves,
        "created": model.created_at.strftime("%Y-%m-%d %H:%M") if model.created_at else "",
        "metrics": [(label, f"{value:.3f}") for label, value in card.metrics],
        "text_mix": ("audio only, no text" if mix is None else
                     " · ".join(f"{source} {count:,}" for source, count in mix.items()) or "no kept descriptions"),
        "config": json.dumps(model.config or {}, indent=2, sort_keys=True),
    }


def _search(room: Room) -> dict | None:
    search = room.search
    if search is None:
        return None
    problems = search.audio_problems
    return {"query": search.query,
            "title_matches": [_track(t, problems.get(t.pk)) for t in search.title_matches],
            "text_hits": [{"score": f"{hit.score:.3f}", "track": _track(hit.track, problems.get(hit.track.pk))}
                          for hit in search.text_hits],
            "text_model": str(search.text_model) if search.text_model else "", "text_error": search.text_error or ""}


@staff_member_required
@require_safe
def listening_room_page(request: HttpRequest) -> HttpResponse:
    errors: list[str] = []
    query = _query(request.GET.get("q", ""), errors)
    seed_id = _track_id(request.GET.get("seed"), "seed", errors)
    model_id = _track_id(request.GET.get("model"), "model", errors)
    room = listening_room(query=query, seed_track_id=seed_id, extra_model_id=model_id)
    return render(request, "recommender/listen.html", {
        "errors": errors, "query": query, "model_id": model_id or "",
        "link_params": urlencode({k: v for k, v in (("q", query), ("model", model_id)) if v}),
        "search": _search(room),
        "seed": _track(room.seed, room.seed_audio_problem) if room.seed else None, "seed_error": room.seed_error or "",
        "columns": [_column(c) for c in room.columns], "cards": [_card(c) for c in room.cards],
        "models": [{"id": m.pk, "label": f"{m} ({m.kind})"} for m in indexed_embedding_models()],
    })


def _headers(response: HttpResponse, audio: AudioFile) -> HttpResponse:
    response["ETag"] = audio.etag
    response["Last-Modified"] = audio.last_modified
    response["Cache-Control"] = CACHE_CONTROL
    response["Accept-Ranges"] = "bytes"
    return response


@staff_member_required
@require_safe
def track_audio(request: HttpRequest, track_id: int) -> HttpResponse:
    """The track's audio file: 200 whole, 206 one byte range, 304 unchanged, 416 range past the end,
    404 JSON ``{"detail": reason}`` when the file is missing or corrupt (the page shows the reason)."""
    try:
        audio = audio_file(track_id)
    except AudioUnavailableError as error:
        response = JsonResponse({"detail": error.reason}, status=404)
        response["Cache-Control"] = "no-store"  # fixed on disk, it must play at once
        return response
    unchanged = get_conditional_response(request, etag=audio.etag, last_modified=audio.mtime)
    if unchanged is not None:
        return _headers(unchanged, audio)
    byte_range = None
    if if_range_allows(request.headers.get("If-Range"), audio.etag, audio.mtime):
        try:
            byte_range = parse_range(request.headers.get("Range"), audio.size)
        except RangeNotSatisfiableError as error:
            response = JsonResponse({"detail": f"range not satisfiable: {error}"}, status=416)
            response["Content-Range"] = f"bytes */{audio.size}"
            return _headers(response, audio)
    if request.method == "HEAD":
        response = HttpResponse(status=206 if byte_range else 200, content_type=audio.content_type)
    else:
        response = StreamingHttpResponse(audio.read(byte_range), status=206 if byte_range else 200,
                                         content_type=audio.content_type)
    response["Content-Length"] = str(byte_range.length if byte_range else audio.size)
    if byte_range:
        response["Content-Range"] = byte_range.content_range(audio.size)
    response["Content-Disposition"] = f'inline; filename="{audio.download_name}"'
    return _headers(response, audio)
