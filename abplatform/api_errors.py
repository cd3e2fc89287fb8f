"""Every answer under /api/ is JSON, including the failures that happen outside a view's own checks.

- The database is away, refuses a connection, or a statement ran past the web process's
  statement or lock timeout: ``503`` with ``Retry-After`` (the client should retry; nothing it
  sent was accepted), instead of an HTML 500 or a request that hangs.
- A body larger than ``API_MAX_BODY_BYTES``: ``413`` before the body is read; a request Django
  refuses to parse (more than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` query fields, ...): ``400``.
- Any other exception: logged with the request's method and path (to ``var/log/platform.log``
  and the console) and answered with a JSON ``500``.

The middleware sits in both the site's chain and the player API's lean chain
(``abplatform.wsgi``). Non-API paths keep Django's own handling.
"""

from __future__ import annotations

import json
import logging

import psycopg
from django.conf import settings
from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("abplatform.api")
# Django's wrapped errors, and psycopg's own from the hot path's raw cursor (selectors.server_bound_cursor):
# connection refused or lost, statement or lock timeout, a server shutting down.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)
API_PREFIX = "/api/"


def json_error(detail: str, status: int, **headers: str) -> HttpResponse:
    response = HttpResponse(json.dumps({"detail": detail}), status=status, content_type="application/json")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def database_unavailable() -> HttpResponse:
    return json_error("the database is unavailable or busy; retry later", 503,
                      Retry_After=str(settings.API_RETRY_AFTER_S))


class ApiErrorMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            length = request.META.get("CONTENT_LENGTH") or "0"
            if length.isdigit() and int(length) > settings.API_MAX_BODY_BYTES:
                return json_error(f"request body too large: {int(length)} bytes, at most "
                                  f"{settings.API_MAX_BODY_BYTES}", 413)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path_info.startswith(API_PREFIX):
            return None
        if isinstance(exception, DATABASE_UNAVAILABLE):
            logger.warning("database unavailable on %s %s: %s", request.method, request.path, exception)
            return database_unavailable()
        if isinstance(exception, RequestDataTooBig):
            return json_error("request body too large", 413)
        if isinstance(exception, (SuspiciousOperation, BadRequest)):  # e.g. more query fields than Django parses
            return json_error(f"bad request: {exception}", 400)
        logger.error("unhandled error on %s %s", request.method, request.path, exc_info=exception)
        return json_error("internal server error (logged)", 500)
