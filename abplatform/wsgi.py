"""WSGI entry point: the player API's two endpoints go through a handler with only the middleware they use.

The site's middleware chain (static files, sessions, CSRF, staff login, messages, frame
options, login lockout) serves the admin and the dashboard. The player API authenticates with
an API key, sets no cookie and renders no page, so for it those are pure cost: measured
in-process, 1,058 -> 858 Python calls and ~0.06-0.18 ms of a recommendation's ~0.5 ms. Both
handlers share the URLconf, the database connections and the signals, so a view behaves
the same whichever handler reached it. Both chains keep the security headers and the rate
limits (``abplatform.ratelimit``, one bucket table per process).
"""

import os
from collections.abc import Sequence

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "abplatform.settings")

PLAYER_API_PATHS = frozenset({"/api/v1/recommendations", "/api/v1/events"})
# Security headers (nosniff, referrer policy, HTTPS redirect when configured) still apply to the API, so do JSON
# errors (503 when the database is away, 413, logged 500s) and the per-key / per-address rate limits
# (abplatform/ratelimit.py: in-process, ~2 us a request).
PLAYER_API_MIDDLEWARE = ("django.middleware.security.SecurityMiddleware", "abplatform.api_errors.ApiErrorMiddleware",
                         "abplatform.ratelimit.RateLimitMiddleware")


class SubsetMiddlewareHandler(WSGIHandler):
    """A WSGIHandler that loads only the named middleware of ``settings.MIDDLEWARE`` (in the site's order)."""

    def __init__(self, keep: Sequence[str]) -> None:
        self.keep = frozenset(keep)
        super().__init__()

    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler reads settings.MIDDLEWARE itself; this runs once, at import, before any request.
        site_chain = settings.MIDDLEWARE
        settings.MIDDLEWARE = [name for name in site_chain if name in self.keep]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = site_chain


site_application = get_wsgi_application()
player_api_application = SubsetMiddlewareHandler(PLAYER_API_MIDDLEWARE)


def application(environ, start_response):
    if environ.get("PATH_INFO") in PLAYER_API_PATHS:
        return player_api_application(environ, start_response)
    return site_application(environ, start_response)
