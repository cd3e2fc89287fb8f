"""API-key authentication for player apps (``Authorization: Api-Key <key>``), reused by every app.

Keys look like ``<prefix>.<secret>``; only the prefix and the SHA-256 of the whole key are
stored. A verified key is cached in-process for ``CACHE_TTL_S`` (1 s), so the hot path costs
one hash and a dict lookup (0.6 us), and a key deactivated in the admin stops working in every
web process within a second. The price of the short TTL is one query on the unique ``prefix``
index per key, per process, per second: 0.5 ms measured in-process (hash, query, cache write;
shared 2-core VM, 2026-12-05), i.e. 0.05 % of one core per active key, against a TTL of 30 s
that left a revoked key working for half a minute. (Wrong keys are never cached; their lookups
are bounded by the per-address failure limit of ``abplatform.ratelimit``.)

Scopes: every active key reaches the player API (recommendations, events, tracks, search);
only ``analyst`` keys (or a staff session) read experiment results (``IsStaffOrAnalystKey``).
Player keys ship inside client apps, so they must not open the analysis.

Usage in a view::

    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [HasApiKey]          # or IsStaffOrApiKey, IsStaffOrAnalystKey
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from abplatform.apikeys.models import ApiKey
from abplatform.apikeys.services import hash_api_key

KEYWORD = "Api-Key"
# How long a verified key is trusted without asking the database again: the revocation delay.
CACHE_TTL_S = 1.0
_CACHE_MAX = 10_000


@dataclass(frozen=True)
class ApiClient:
    """``request.user`` for a request authenticated by an API key (a player app, never staff)."""

    api_key_id: int
    name: str
    scope: str = ApiKey.Scope.PLAYER
    is_authenticated: bool = True
    is_staff: bool = False
    is_superuser: bool = False
    is_active: bool = True
    is_anonymous: bool = False

    @property
    def pk(self) -> str:
        return f"api-key:{self.api_key_id}"

    def __str__(self) -> str:
        return f"api key {self.name}"


_cache: dict[str, tuple[float, ApiClient]] = {}
_cache_lock = threading.Lock()


def clear_api_key_cache() -> None:
    with _cache_lock:
        _cache.clear()


def verify_api_key(key: str) -> ApiClient | None:
    """The client a full key belongs to, or None when it is unknown, wrong or inactive."""
    digest = hash_api_key(key)
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    prefix, dot, _ = key.partition(".")
    if not dot or not prefix or len(prefix) > 16:
        return None
    row = (ApiKey.objects.filter(prefix=prefix, active=True)
           .values_list("id", "name", "key_hash", "scope").first())
    if row is None or not hmac.compare_digest(row[2], digest):
        return None
    client = ApiClient(api_key_id=row[0], name=row[1], scope=row[3])
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[digest] = (now + CACHE_TTL_S, client)
    return client


MALFORMED = "malformed API key header: expected 'Api-Key <key>'"
UNKNOWN = "unknown or inactive API key"


def api_client_from_header(header: str) -> tuple[ApiClient | None, str | None]:
    """(client, None) for a valid ``Api-Key`` header; (None, reason) for a bad one; (None, None) when absent
    or another scheme. Shared by the DRF authentication class and the plain hot-path view."""
    if not header:
        return None, None
    keyword, _, key = header.partition(" ")
    if keyword != KEYWORD:
        return None, None
    key = key.strip()
    if not key or len(key) > 200:
        return None, MALFORMED
    client = verify_api_key(key)
    return (client, None) if client is not None else (None, UNKNOWN)


class ApiKeyAuthentication(BaseAuthentication):
    """DRF authentication: ``Authorization: Api-Key <key>`` -> (ApiClient, ApiClient)."""

    def authenticate(self, request):
        client, error = api_client_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
        if error is not None:
            raise exceptions.AuthenticationFailed(error)
        if client is None:
            return None  # no header, or another scheme; let the next authentication class try
        return client, client

    def authenticate_header(self, request) -> str:
        return KEYWORD  # makes DRF answer 401 (not 403) when credentials are missing


class HasApiKey(BasePermission):
    message = "authenticate with 'Authorization: Api-Key <key>'"

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, ApiClient)


class IsStaffOrApiKey(BasePermission):
    """Staff users (session) or a player app with an API key."""

    message = "authenticate with 'Authorization: Api-Key <key>' or as a staff user"

    def has_permission(self, request, view) -> bool:
        user = request.user
        return isinstance(request.auth, ApiClient) or bool(user and user.is_authenticated and user.is_staff)


class IsStaffOrAnalystKey(BasePermission):
    """Staff users (session) or an ``analyst`` API key: what experiment results need.

    A player key is authenticated but not allowed, so DRF answers 403 with this message as
    ``{"detail": ...}`` (a missing or wrong key stays a 401).
    """

    message = ("experiment results need a staff session or an API key with the 'analyst' scope "
               "(manage.py create_api_key NAME --scope analyst); this is not one")

    def has_permission(self, request, view) -> bool:
        auth = request.auth
        if isinstance(auth, ApiClient):
            return auth.scope == ApiKey.Scope.ANALYST
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Documents the scheme in the OpenAPI schema (drf-spectacular finds it by the class path)."""

    target_class = "abplatform.apikeys.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Api-Key <key>` (create one with `manage.py create_api_key NAME`; "
                                "`--scope analyst` for the experiment results)"}
