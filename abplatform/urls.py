from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from abplatform.api_errors import API_PREFIX
from abplatform.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(permission_classes=[]), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", permission_classes=[]), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", permission_classes=[]), name="api-redoc"),
    path("api/v1/", include("recommender.urls")),
    path("api/v1/", include("experiments.urls")),
    path("", include("experiments.dashboard_urls")),
    path("", include("recommender.listen.urls")),
]


def api_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A path no route matches: JSON under /api/ like every other API answer, Django's page elsewhere.

    A route's own converter refusing a value (``experiments/-1/results``, ``experiments/x/results``)
    ends here too: before, that was an HTML page where the schema promises ``{"detail": ...}``.
    Django calls this only with DEBUG off (with DEBUG on it shows its technical 404 page)."""
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": f"no API route matches {request.path_info!r}"}, status=404)
    return page_not_found(request, exception)


handler404 = api_not_found
