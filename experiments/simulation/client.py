"""A small HTTP client for the platform's public player API (httpx, pooled, with retries).

It authenticates like a player app (``Authorization: Api-Key <key>``) and retries only what
is worth retrying: connection errors, timeouts, 429 and 502/503/504. Retried event batches
keep their event ids, so the platform counts them once.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})


def add_api_key_arguments(parser, file_help: str) -> None:
    """``--api-key-file PATH`` (the way to pass a key) or ``--api-key KEY`` (compatibility), never both."""
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--api-key-file", type=Path, default=None, help=file_help)
    keys.add_argument("--api-key", default="",
                      help="the key itself (kept for compatibility: it shows in `ps`; prefer --api-key-file or "
                           "$PLAYER_API_KEY)")


def resolve_api_key(key: str = "", key_file: str | os.PathLike | None = None, *, default_key: str = "",
                    default_key_file: str | os.PathLike | None = None) -> str:
    """The API key to use: ``key``, else the first line of ``key_file``, else ``default_key``, else the first
    line of ``default_key_file``; "" when none is given.

    The defaults are the caller's configuration (the platform's PLAYER_API_KEY and PLAYER_API_KEY_FILE
    settings): this package is plain Python and reads no environment.
    Why a file: a key passed as ``--api-key KEY`` sits in the process's command line, which every
    local user can read (``ps``, /proc/<pid>/cmdline). A file (mode 600, like var/player_api_key)
    or the environment stays private to the owner. Raises ``ValueError`` for an unreadable or
    empty file, so a typo in the path is not mistaken for "no key".
    """
    if key:
        return key.strip()
    if key_file is None:
        if default_key.strip():
            return default_key.strip()
        key_file = default_key_file or None
        if key_file is None:
            return ""
    try:
        text = Path(key_file).read_text()
    except OSError as error:
        raise ValueError(f"cannot read the API key file {key_file}: {error.strerror or error}") from error
    lines = text.strip().splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"the API key file {key_file} is empty")
    return lines[0].strip()


class ApiError(Exception):
    """A request that failed for good: a non-retryable status, or retries exhausted."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body

    @property
    def kind(self) -> str:
        return f"http_{self.status}" if self.status is not None else "transport"


@dataclass(frozen=True)
class RecommendedItem:
    track: int
    position: int
    score: float | None = None


@dataclass(frozen=True)
class Recommendation:
    request_id: str
    experiment: str | int | None
    variant: str | None
    model: str | int | None
    items: tuple[RecommendedItem, ...]
    placement: str = "track_page"

    @classmethod
    def from_json(cls, body: dict) -> Recommendation:
        try:
            items = tuple(
                RecommendedItem(track=int(item["track"]), position=int(item["position"]), score=item.get("score"))
                for item in body["items"]
            )
            return cls(
                request_id=str(body["request_id"]),
                experiment=body.get("experiment"),
                variant=None if body.get("variant") is None else str(body["variant"]),
                model=body.get("model"),
                items=items,
                placement=str(body.get("placement") or "track_page"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ApiError(f"malformed recommendation response: {exc!r}") from exc


@dataclass(frozen=True)
class EventsResult:
    accepted: int
    duplicates: int
    rejected: tuple[dict, ...] = field(default_factory=tuple)


def _variant_label(value) -> str | None:
    """The API may return the variant as a key string or as an object with a ``key``."""
    if isinstance(value, dict):
        return str(value.get("key") or value.get("name") or value.get("id"))
    return None if value is None else str(value)


class PlatformClient:
    """Thread-safe client: one pooled ``httpx.Client`` shared by all simulator threads."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        max_connections: int = 32,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.1,
    ) -> None:
        if not api_key:
            raise ValueError("an API key is needed (Authorization: Api-Key <key>)")
        self.retries = retries
        self.backoff_s = backoff_s
        self._lock = threading.Lock()
        self.retried = 0  # requests sent again after a transient failure
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Api-Key {api_key}", "Accept": "application/json"},
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            timeout=httpx.Timeout(timeout_s),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PlatformClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, method: str, url: str, **kwargs) -> httpx.Response:
        """Send with exponential backoff on transient failures; raise :class:`ApiError` otherwise."""
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if last:
                    raise ApiError(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc
            else:
                if response.status_code < 400:
                    return response
                if response.status_code not in RETRY_STATUSES or last:
                    raise ApiError(
                        f"{method} {url}: HTTP {response.status_code}: {response.text[:300]}",
                        status=response.status_code,
                        body=response.text,
                    )
            with self._lock:
                self.retried += 1
            time.sleep(self.backoff_s * (2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def iter_tracks(self, page_size: int = 500) -> Iterator[dict]:
        """Every track of ``GET /api/v1/tracks``, following the pagination (DRF ``next`` links or pages)."""
        url: str | None = "/api/v1/tracks"
        params: dict | None = {"page": 1, "page_size": page_size}
        page = 1
        while url:
            body = self._send("GET", url, params=params).json()
            if isinstance(body, list):  # unpaginated
                yield from body
                return
            rows = body.get("results", [])
            yield from rows
            following = body.get("next")
            if following:
                url, params = following, None  # absolute link carries its own query
            elif rows and body.get("count") is None and len(rows) == page_size:
                page += 1
                url, params = "/api/v1/tracks", {"page": page, "page_size": page_size}
            else:
                url = None

    def recommend(self, user: str, seed_track: int, k: int, exclude: Sequence[int] = (),
                  placement: str | None = None) -> Recommendation:
        params: dict = {"user": user, "seed_track": seed_track, "k": k}
        if placement:
            params["placement"] = placement
        if exclude:
            params["exclude"] = ",".join(str(track) for track in exclude)
        body = self._send("GET", "/api/v1/recommendations", params=params).json()
        rec = Recommendation.from_json(body)
        return Recommendation(rec.request_id, rec.experiment, _variant_label(body.get("variant")), rec.model, rec.items,
                              rec.placement)

    def post_events(self, events: Sequence[dict]) -> EventsResult:
        body = self._send("POST", "/api/v1/events", json={"events": list(events)}).json()
        return EventsResult(
            accepted=int(body.get("accepted", 0)),
            duplicates=int(body.get("duplicates", 0)),
            rejected=tuple(body.get("rejected") or ()),
        )

    def experiment_results(self, experiment_id: int | str) -> dict:
        return self._send("GET", f"/api/v1/experiments/{experiment_id}/results").json()
