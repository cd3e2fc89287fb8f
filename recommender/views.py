"""Thin DRF views of the recommender API: parse the query, call one selector, serialise."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from abplatform.api.openapi import ParameterErrorsSerializer, error_headers, error_responses, request_line_too_long
from abplatform.api.parsers import StrictJSONParser
from abplatform.apikeys.authentication import ApiKeyAuthentication, IsStaffOrApiKey
from recommender.selectors import track_list
from recommender.serializers import (
    SearchQuerySerializer,
    SearchResponseSerializer,
    TrackSerializer,
)
from recommender.services.search import SearchUnavailableError, text_search

# Players send ``Authorization: Api-Key <key>``; staff may use the API from a logged-in session.
API_AUTHENTICATION = [ApiKeyAuthentication, SessionAuthentication]


def _reason(errors: dict) -> str:
    return "; ".join(f"{name}: {' '.join(str(m) for m in messages)}" for name, messages in errors.items())


class TrackPagination(PageNumberPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def get_schema_operation_parameters(self, view) -> list[dict]:
        """DRF's two parameters with their real limits: a page past the end is a 404; a page size above the
        maximum is served as the maximum, one that is not a positive integer as the default."""
        return [
            {"name": self.page_query_param, "required": False, "in": "query",
             "description": "1-based page number; a page past the last one is 404",
             "schema": {"type": "integer", "minimum": 1}},
            {"name": self.page_size_query_param, "required": False, "in": "query",
             "description": f"Tracks per page, 1-{self.max_page_size} (default {self.page_size}); larger values "
                            f"are served as {self.max_page_size}",
             "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size, "default": self.page_size}},
        ]


@extend_schema(
    summary="Catalog tracks, paginated",
    tags=["catalog"],
    parameters=error_headers(retry_after_on_every_503=True, rate_limited=True),
    responses={200: TrackSerializer(many=True),  # wrapped in the paginated envelope by drf-spectacular
               **error_responses(401, 403, 404, 429, 500, 503, r404="`page` is past the last page or not a number.")},
)
class TrackListView(generics.ListAPIView):
    authentication_classes = API_AUTHENTICATION
    permission_classes = [IsStaffOrApiKey]
    parser_classes = [StrictJSONParser]
    serializer_class = TrackSerializer
    pagination_class = TrackPagination

    def get_queryset(self):
        return track_list()


class TextSearchView(APIView):
    authentication_classes = API_AUTHENTICATION
    permission_classes = [IsStaffOrApiKey]
    parser_classes = [StrictJSONParser]

    @extend_schema(
        summary="Text-to-music search through the active cross-modal model",
        tags=["catalog"],
        parameters=[SearchQuerySerializer, *error_headers(retry_after_on_every_503=False, rate_limited=True)],
        responses={
            200: SearchResponseSerializer,
            400: OpenApiResponse(ParameterErrorsSerializer, description="Invalid `q` or `k`; `errors` says why."),
            **request_line_too_long(),
            **error_responses(401, 403, 409, 429, 500, 503,
                              r409="The model active for the crossmusim arm is not cross-modal: it cannot embed text.",
                              r503="No model is active for the crossmusim arm or its checkpoint is missing (no "
                                   "`Retry-After`), or the database is unavailable or busy (`Retry-After`)."),
        },
    )
    def get(self, request: Request) -> Response:
        params = SearchQuerySerializer(data=request.query_params)
        if not params.is_valid():
            return Response({"detail": _reason(params.errors), "errors": params.errors}, status=400)
        try:
            result = text_search(params.validated_data["q"], params.validated_data["k"])
        except SearchUnavailableError as error:
            return Response({"detail": error.reason}, status=error.status)
        payload = {
            "query": result.query,
            "model": {"id": result.model.pk, "name": result.model.name, "version": result.model.version},
            "items": [{"track": hit.track, "position": n, "score": hit.score} for n, hit in enumerate(result.hits, 1)],
        }
        return Response(SearchResponseSerializer(payload).data)
