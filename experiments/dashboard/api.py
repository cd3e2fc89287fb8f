"""GET /api/v1/experiments/<id>/results: the full analysis as JSON (staff session or an ``analyst`` API key)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from abplatform.apikeys.authentication import ApiKeyAuthentication, IsStaffOrAnalystKey
from experiments.analysis import experiment_results
from experiments.models import Experiment


class ExperimentResultsView(APIView):
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [IsStaffOrAnalystKey]  # player keys ship in apps: 403

    @extend_schema(responses={200: OpenApiTypes.OBJECT},
                   description="Variant table, every test (delta method, always-valid, naive), SRM, power, "
                               "the verdict and the charts' data of one experiment.")
    def get(self, request, pk: int):
        experiment = Experiment.objects.filter(pk=pk).first()
        if experiment is None:
            raise NotFound(f"no experiment {pk}")
        try:
            results = experiment_results(experiment)
        except ValueError as error:
            raise ValidationError({"detail": str(error)}) from error
        return Response(results.to_dict())
