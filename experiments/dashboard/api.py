"""GET /api/v1/experiments/<id>/results: the full analysis as JSON (staff session or an ``analyst`` API key)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from abplatform.api.openapi import error_headers, error_responses
from abplatform.api.parsers import StrictJSONParser
from abplatform.apikeys.authentication import ApiKeyAuthentication, IsStaffOrAnalystKey
from experiments.analysis import experiment_results
from experiments.api.serializers import MAX_INT
from experiments.dashboard.schema import ExperimentResultsSerializer, InterleavingResultsSerializer
from experiments.models import Experiment


class ExperimentResultsView(APIView):
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [IsStaffOrAnalystKey]  # player keys ship in apps: 403
    parser_classes = [StrictJSONParser]

    @extend_schema(
        summary="The full analysis of one experiment",
        description="Variant table, every test (delta method, always-valid, naive), SRM, power, the verdict and "
                    "the charts' data of one A/B experiment; once users have impressions, its metric plan too: "
                    "every metric raw and CUPED (metrics, metric_comparisons), the group-sequential test when the "
                    "plan has a planned size (group_sequential) and the ship decision (decisions); series per hour "
                    "while younger than three days (hourly_series, hourly_lift_series). For an interleaving "
                    "experiment (``kind``: interleaving), the teams' credits, the share of B credits with its "
                    "tests, the balance checks, the verdict and the charts' data.",
        tags=["experiments"],
        parameters=[
            OpenApiParameter("id", {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_INT},
                             OpenApiParameter.PATH, description="The experiment's id"),
            *error_headers(retry_after_on_every_503=True, rate_limited=True),
        ],
        responses={
            200: PolymorphicProxySerializer(
                component_name="Results", serializers=[ExperimentResultsSerializer, InterleavingResultsSerializer],
                resource_type_field_name=None),
            **error_responses(400, 401, 403, 404, 429, 500, 503,
                              r400="The experiment has no control variant, so there is nothing to compare with.",
                              r404="No experiment with this id."),
        },
    )
    def get(self, request: Request, pk: int) -> Response:
        experiment = Experiment.objects.filter(pk=pk).first()
        if experiment is None:
            raise NotFound(f"no experiment {pk}")
        try:
            results = experiment_results(experiment)
        except ValueError as error:
            raise ValidationError({"detail": str(error)}) from error
        return Response(results.to_dict())
