"""Thin DRF views of the recommender API: parse the query, call one selector, serialise."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from abplatform.apikeys.authentication import ApiKeyAuthentication, IsStaffOrApiKey
from recommender.selectors import track_list
from recommender.serializers import (
    ErrorSerializer,
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


@extend_schema(summary="Catalog tracks, paginated", tags=["catalog"])
class TrackListView(generics.ListAPIView):
    authentication_classes = API_AUTHENTICATION
    permission_classes = [IsStaffOrApiKey]
    serializer_class = TrackSerializer
    pagination_class = TrackPagination

    def get_queryset(self):
        return track_list()


class TextSearchView(APIView):
    authentication_classes = API_AUTHENTICATION
    permission_classes = [IsStaffOrApiKey]

    @extend_schema(
        summary="Text-to-music search through the active cross-modal model",
        tags=["catalog"],
        parameters=[
            OpenApiParameter("q", OpenApiTypes.STR, required=True, description="Text describing the music"),
            OpenApiParameter("k", OpenApiTypes.INT, description="Number of tracks (1-100, default 10)"),
        ],
        responses={200: SearchResponseSerializer, 400: ErrorSerializer, 409: ErrorSerializer, 503: ErrorSerializer},
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
