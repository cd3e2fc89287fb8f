"""Thin views of the serving API: parse and validate, call one service, shape the answer.

The recommendation endpoint is the platform's hot path and is served by a plain Django
function (``serve_recommendations``): DRF's request wrapping, content negotiation and
renderer cost about as much CPU as the assignment and the KNN round trip's Python side
together (bench/serve_load.py). ``RecommendationView`` stays as the DRF class that
documents it in the OpenAPI schema; its ``as_view()`` hands out the plain function.
The events endpoint is a regular DRF view.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from abplatform.api.openapi import REQUEST_LINE_LIMIT, error_headers, error_responses, request_line_too_long
from abplatform.api.parsers import StrictJSONParser
from abplatform.apikeys.authentication import KEYWORD, ApiKeyAuthentication, HasApiKey, api_client_from_header
from experiments.api.serializers import (
    MAX_EXCLUDE,
    MAX_EXCLUDE_ID,
    MAX_INT,
    MAX_K,
    MAX_PLACEMENT_LEN,
    MAX_USER_LEN,
    EventBatchResponseSerializer,
    EventBatchSerializer,
    RecommendationResponseSerializer,
    parse_recommendation_query,
)
from experiments.events.clicks import ClickEvent
from experiments.events.plays import PlayEvent, events_record
from experiments.serving import NoArmAvailableError, UnknownPlacementError, recommend
from recommender.vector_search import SeedNotIndexedError


def _flatten(errors, prefix: str = "") -> dict[str, str]:
    """DRF's nested errors -> {"events[3].position": "reason"}: one string per field, as the schema says.

    A ListField keys its items' errors by index (``{3: {...}}``), a list serializer lists them; both
    read ``events[3]``."""
    flat: dict[str, str] = {}
    if isinstance(errors, dict):
        for name, value in errors.items():
            if isinstance(name, int):
                key = f"{prefix}[{name}]"
            elif prefix:
                key = f"{prefix}.{name}"
            else:
                key = str(name)
            flat.update(_flatten(value, key))
    elif isinstance(errors, list) and errors and all(isinstance(e, str) for e in errors):
        flat[prefix or "non_field_errors"] = " ".join(str(e) for e in errors)
    elif isinstance(errors, list):
        for index, value in enumerate(errors):
            if value:
                flat.update(_flatten(value, f"{prefix}[{index}]"))
    else:
        flat[prefix or "non_field_errors"] = str(errors)
    return flat


def _bad_request_body(errors) -> dict:
    flat = _flatten(errors)
    detail = "; ".join(f"{name}: {reason}" for name, reason in list(flat.items())[:10])
    return {"detail": f"invalid request: {detail}", "errors": flat}


def bad_request(errors) -> Response:
    return Response(_bad_request_body(errors), status=status.HTTP_400_BAD_REQUEST)


def _json(body: dict, status_code: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(body, separators=(",", ":")), status=status_code,
                        content_type="application/json")


@csrf_exempt
def serve_recommendations(request: HttpRequest) -> HttpResponse:
    """GET /api/v1/recommendations as a plain Django view (see the module docstring for why).

    Same contract as the DRF views around it: ``Api-Key`` authentication (401 with
    ``WWW-Authenticate: Api-Key``), 405 for other methods, 400 with per-field reasons.
    """
    if request.method not in ("GET", "HEAD"):
        response = _json({"detail": f'Method "{request.method}" not allowed.'}, status.HTTP_405_METHOD_NOT_ALLOWED)
        response["Allow"] = "GET, HEAD, OPTIONS"
        return response
    client, error = api_client_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
    if client is None:
        response = _json({"detail": error or HasApiKey.message}, status.HTTP_401_UNAUTHORIZED)
        response["WWW-Authenticate"] = KEYWORD
        return response
    query = parse_recommendation_query(request.GET)
    if isinstance(query, dict):
        return _json(_bad_request_body(query), status.HTTP_400_BAD_REQUEST)
    try:
        result = recommend(user_id=query.user, seed_track_id=query.seed_track, k=query.k, exclude=query.exclude,
                           record=request.method == "GET", placement=query.placement)
    except UnknownPlacementError as error:
        return _json(_bad_request_body({"placement": [str(error)]}), status.HTTP_400_BAD_REQUEST)
    except SeedNotIndexedError as error:
        return _json({"detail": str(error)}, status.HTTP_404_NOT_FOUND)
    except NoArmAvailableError as error:
        return _json({"detail": str(error)}, status.HTTP_503_SERVICE_UNAVAILABLE)
    return _json({
        "request_id": str(result.request_id),
        "experiment": result.experiment_id,
        "experiment_name": result.experiment_name,
        "variant": result.variant,
        "placement": result.placement,
        "model": result.model,
        "model_id": result.model_id,
        "items": [
            {"track": item.track_id, "position": position, "score": round(item.score, 6),
             "title": item.title, "artist": item.artist}
            for position, item in enumerate(result.items, start=1)
        ],
    })


class PlayerApiView(APIView):
    """The player API's DRF views: API key only, JSON in and out (forms get 415, never parsed)."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    parser_classes = [StrictJSONParser]
    renderer_classes = [JSONRenderer]


USER_PATTERN = (
    # Cheap half of abplatform.api.validation.text_problem (controls, line/paragraph separators) and "not blank";
    # the description lists what a pattern cannot say cheaply.
    r"^[^\u0000-\u001F\u007F-\u009F\u2028\u2029]*[^\s\u0000-\u001F\u007F-\u009F\u2028\u2029]"
    r"[^\u0000-\u001F\u007F-\u009F\u2028\u2029]*$"
)


@extend_schema(
    summary="Recommendations for a user around a seed track",
    description="Hashes the user into the placement's layer: the experiment holding that bucket assigns a variant, "
                "else the placement's default model serves; returns the k nearest tracks of that arm's embedding "
                "model and records the page shown (users in an experiment). "
                "HEAD answers the same without recording anything.",
    parameters=[
        OpenApiParameter(
            "user", {"type": "string", "minLength": 1, "maxLength": MAX_USER_LEN, "pattern": USER_PATTERN},
            required=True,
            description=f"The player's user id, 1-{MAX_USER_LEN} characters, not blank. Any letter, mark, number, "
                        "symbol, punctuation, space or format character of any script; refused (400): control "
                        "characters, line/paragraph separators, surrogates, noncharacters, private-use and "
                        "unassigned code points."),
        OpenApiParameter("seed_track", {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_INT},
                         required=True, description="Track to recommend around; 404 when the arm has not indexed it"),
        OpenApiParameter("k", {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10},
                         description=f"Number of tracks, 1-{MAX_K}"),
        OpenApiParameter("placement", {"type": "string", "maxLength": MAX_PLACEMENT_LEN,
                                       "pattern": r"^[A-Za-z0-9_-]+$", "default": "track_page"},
                         description="Where the player shows the list (e.g. track_page, autoplay); each placement "
                                     "has its own default model and experiments. 400 for a placement that does not "
                                     "exist."),
        OpenApiParameter(
            "exclude", {"type": "array", "maxItems": MAX_EXCLUDE,
                        "items": {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_EXCLUDE_ID}},
            style="form", explode=False,
            description=f"Track ids never to recommend, comma-separated (`exclude=12,40,7`): at most {MAX_EXCLUDE} "
                        f"ids of at most {len(str(MAX_EXCLUDE_ID))} digits, and the whole request line within "
                        f"{REQUEST_LINE_LIMIT} bytes (414 otherwise). Spaces around ids and empty items are ignored. "
                        "The seed is always excluded."),
    ] + error_headers(retry_after_on_every_503=False, rate_limited=True),
    responses={
        200: RecommendationResponseSerializer,
        **request_line_too_long(),
        **error_responses(400, 401, 404, 429, 500, 503,
                          r404="The seed track is not in the index of the serving arm's model.",
                          r503="No model is active for the arm the user is assigned to (no `Retry-After`), or the "
                               "database is unavailable or busy (`Retry-After`)."),
    },
    tags=["serving"],
)
class RecommendationView(PlayerApiView):
    """The OpenAPI description of ``serve_recommendations``: drf-spectacular reads this class, requests
    never reach it (``as_view`` returns the plain function, carrying the class as DRF views do)."""

    @classmethod
    def as_view(cls, **initkwargs):
        serve_recommendations.cls = cls  # already csrf_exempt; routed once, so setting these here is enough
        serve_recommendations.initkwargs = initkwargs
        return serve_recommendations

    def get(self, request: Request) -> Response:  # pragma: no cover - documentation only, see as_view
        raise NotImplementedError("served by serve_recommendations")


@extend_schema(
    summary="Record a batch of click and play events",
    description="Each click must match an impression of its request (same position and track); each play must "
                "match an impression that has a click (earlier, or in the same batch), and carries "
                "`listened_seconds` and `skipped`. An event with no match is rejected with a reason and never "
                "counted. One click and one play count per impression: a repeated event_id, or another id for "
                "the same request and position, is acknowledged as a duplicate and counted once. JSON only.",
    request={"application/json": EventBatchSerializer},
    parameters=error_headers(retry_after_on_every_503=True, rate_limited=True),
    responses={
        202: EventBatchResponseSerializer,
        **error_responses(400, 401, 413, 415, 429, 500, 503,
                          r400="Not a JSON object `{\"events\": [...]}`, unparsable or too deeply nested JSON, or "
                               "invalid events (`errors` names each, e.g. `events[3].position`); nothing is "
                               "recorded."),
    },
    tags=["serving"],
)
class EventBatchView(PlayerApiView):
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            return bad_request({"non_field_errors": ["expected a JSON object {\"events\": [...]}"]})
        batch = EventBatchSerializer(data=request.data)
        if not batch.is_valid():
            return bad_request(batch.errors)
        events = batch.validated_data["events"]
        clicks = [ClickEvent(event_id=e["event_id"], request_id=e["request_id"], track_id=e["track"],
                             position=e["position"], client_time=e["client_time"])
                  for e in events if e["type"] == "click"]
        plays = [PlayEvent(event_id=e["event_id"], request_id=e["request_id"], track_id=e["track"],
                           position=e["position"], listened_seconds=e["listened_seconds"], skipped=e["skipped"],
                           client_time=e["client_time"])
                 for e in events if e["type"] == "play"]
        result = events_record(clicks, plays)
        return Response(
            {"accepted": result.accepted, "duplicates": result.duplicates,
             "rejected": [{"event_id": event_id, "reason": reason} for event_id, reason in result.rejected]},
            status=status.HTTP_202_ACCEPTED,
        )
