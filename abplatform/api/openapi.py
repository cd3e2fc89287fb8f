"""The answers every /api/v1/ operation shares, documented once: JSON error shapes, status codes, headers.

Every failure under /api/ is JSON ``{"detail": "..."}``, whoever produces it: the view (400,
404, 409), DRF (401, 403, 415, 400 for unparsable JSON), ``abplatform.api_errors`` (413, 503
with ``Retry-After``, 500), the URL resolver (404, ``abplatform.urls.api_not_found``) and the
rate limiter of the player API (429 with ``Retry-After``). A client codes against the schema, so
each view lists exactly the codes it can answer with (``error_responses``) and the headers that
come with them (``error_headers``); tests/web/test_api_fuzz.py holds the live server to it.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ApiErrorSerializer(serializers.Serializer):
    """`{"detail": ...}`: every JSON error of the API; a 400 of the serving API adds `errors`."""

    detail = serializers.CharField(help_text="Why the request was refused or failed, for people")
    errors = serializers.DictField(
        child=serializers.CharField(), required=False,
        help_text="400 only: one reason per offending field, e.g. `{\"k\": \"k must be between 1 and 100\", "
                  "\"events[3].position\": \"...\"}`")


class ParameterErrorsSerializer(serializers.Serializer):
    """A 400 of the catalog API: DRF's own per-parameter lists of reasons."""

    detail = serializers.CharField(help_text="Every reason in one line, for people")
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                   help_text="Reasons by query parameter, e.g. `{\"k\": [\"...\"]}`")


def _reasons() -> dict[int, str]:
    return {
        400: "Invalid query parameters or body; `detail` says why.",
        401: "No API key, a malformed `Authorization` header, or an unknown or inactive key. "
             "Sent with `WWW-Authenticate: Api-Key`.",
        403: "Signed in with a session that is not a staff user's (an API key is never refused here).",
        404: "Not found.",
        409: "The request conflicts with the platform's current state.",
        413: f"Body larger than {settings.API_MAX_BODY_BYTES} bytes (`API_MAX_BODY_BYTES`); refused before "
             "it is read.",
        415: "Body that is not `application/json` (forms and multipart bodies are refused, never parsed).",
        429: "Too many requests from this API key or address; retry after `Retry-After` seconds.",
        500: "A bug: logged with the method and path; still JSON.",
        503: "The database is unavailable or busy (connection refused, statement or lock timeout); nothing "
             "sent was accepted, retry after `Retry-After` seconds.",
    }


def error_responses(*codes: int, **reasons: str) -> dict[int, OpenApiResponse]:
    """``{code: OpenApiResponse}`` for ``extend_schema(responses=...)``, each a JSON ``ApiError``.

    ``reasons`` (``r404="no such track"``) replaces the shared description of a code where the
    view says more precisely when it answers with it."""
    defaults = _reasons()
    unknown = [code for code in codes if code not in defaults]
    if unknown:
        raise ValueError(f"no shared description for status {unknown}")
    return {code: OpenApiResponse(ApiErrorSerializer, description=reasons.get(f"r{code}", defaults[code]))
            for code in codes}


# gunicorn's default limit_request_line (abplatform/gunicorn_conf.py keeps it): a longer request line is answered
# by gunicorn itself, before Django, with an HTML 414.
REQUEST_LINE_LIMIT = 8190  # gunicorn_conf.limit_request_line


def request_line_too_long() -> dict[int, OpenApiResponse]:
    """The 414 of operations whose query can outgrow gunicorn's request line (long ``exclude`` lists, long
    non-ASCII ``q``): documented without a JSON body because gunicorn, not the API, sends it."""
    return {414: OpenApiResponse(
        None, description=f"Request line (path and query, percent-encoded) over {REQUEST_LINE_LIMIT} bytes: "
                          "refused by gunicorn before the API sees it, with an HTML body.")}


RETRY_AFTER_SCHEMA = {"type": "integer", "minimum": 0}


def error_headers(*, retry_after_on_every_503: bool, rate_limited: bool) -> list[OpenApiParameter]:
    """The response headers that come with the error codes (``extend_schema(parameters=...)``).

    ``retry_after_on_every_503``: False where the view answers 503 for another reason too (no model
    active for an arm), without ``Retry-After``. ``rate_limited``: the player API's 429 sends it."""
    headers = [
        OpenApiParameter("WWW-Authenticate", str, OpenApiParameter.HEADER, response=[401], required=True,
                         description="`Api-Key`: the scheme to authenticate with"),
        OpenApiParameter("Retry-After", RETRY_AFTER_SCHEMA, OpenApiParameter.HEADER, response=[503],
                         required=retry_after_on_every_503,
                         description="Seconds to wait before retrying (`API_RETRY_AFTER_S`)"
                                     + ("" if retry_after_on_every_503 else
                                        "; sent when the database is unavailable or busy")),
    ]
    if rate_limited:
        headers.append(OpenApiParameter("Retry-After", RETRY_AFTER_SCHEMA, OpenApiParameter.HEADER, response=[429],
                                         required=True, description="Seconds until this key or address may retry"))
    return headers
