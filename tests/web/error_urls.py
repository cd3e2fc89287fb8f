"""A URLconf for the error-handling tests: the real one, plus an API view that fails the way a bug would."""

from django.urls import path

from abplatform.urls import urlpatterns as real_urlpatterns


def broken_view(request):
    raise ZeroDivisionError("a bug in a view")


urlpatterns = [path("api/v1/broken", broken_view), *real_urlpatterns]
