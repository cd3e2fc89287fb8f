"""Rate limits on the player API: in-process token buckets per API key and per client address.

Why in-process: the recommendation endpoint costs ~0.5 ms of Python per request, so a limiter
that asks Redis or PostgreSQL (a network round trip, 0.1-0.3 ms) would add a fifth to the hot
path. A token bucket in a dict under a lock costs ~2 microseconds (figures in ``TokenBuckets``'
docstring). The price: **the limits hold per web process**. With W gunicorn
workers a client gets up to W times the configured rate (the kernel spreads its connections
over the workers), so set the rates as "per worker" figures.

Three buckets are checked for each request under ``RATE_LIMIT_PATH_PREFIX`` (``/api/v1/``):

- per API key (the ``Api-Key`` the request presents, before it is verified): a player key
  ships inside every install of an app, so this is a ceiling on the whole app's traffic
  and its default is high;
- per client address: the one that stops a single device or script;
- per client address, its authentication failures (answers 401): wrong keys are cheap to
  send (a tester tried 50 in 0.15 s) and each one costs the server a database lookup, so
  once an address has spent its small failure budget all its API requests get 429 until
  the budget refills. A presented wrong key is never a key of its own that could escape
  the address limits.

A refused request answers 429 ``{"detail": ...}`` with ``Retry-After`` (whole seconds) and
consumes nothing. Rates of 0 disable a bucket. The client address is ``REMOTE_ADDR``
(IPv6 addresses by their /64, which one host usually owns whole); behind a reverse proxy,
set ``RATE_LIMIT_ADDR_HEADER`` to the ``request.META`` name of a header the proxy
*overwrites* (e.g. ``HTTP_X_REAL_IP``), or every client shares the proxy's address.

Settings (read once, when the middleware is built: at process start, or per test client):
``RATE_LIMIT_KEY_PER_S`` / ``_BURST``, ``RATE_LIMIT_ADDR_PER_S`` / ``_BURST``,
``RATE_LIMIT_AUTH_FAIL_PER_S`` / ``_BURST``, ``RATE_LIMIT_PATH_PREFIX``,
``RATE_LIMIT_ADDR_HEADER``.

The middleware sits right after ``SecurityMiddleware`` in ``settings.MIDDLEWARE`` and in the
lean chain of the two hot endpoints (``abplatform.wsgi.PLAYER_API_MIDDLEWARE``); both chains
share one bucket table per process.
"""

from __future__ import annotations

import ipaddress
import json
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

API_KEY_PREFIX = "Api-Key "
_MAX_ENTRIES = 50_000  # per table; beyond it buckets that have refilled (same as absent) are dropped


@dataclass(frozen=True)
class Rate:
    """Tokens per second and bucket size; ``per_s <= 0`` turns the limit off."""

    per_s: float
    burst: float

    @property
    def enabled(self) -> bool:
        return self.per_s > 0

    @classmethod
    def from_settings(cls, name: str, default_per_s: float) -> Rate:
        per_s = float(getattr(settings, f"RATE_LIMIT_{name}_PER_S", default_per_s))
        burst = float(getattr(settings, f"RATE_LIMIT_{name}_BURST", 0) or 2 * per_s)
        return cls(per_s, max(burst, 1.0))


class TokenBuckets:
    """Token buckets keyed by anything hashable, in three tables, under one lock.

    A bucket is ``[tokens, last_refill]``; refilling is done lazily when it is next touched.
    Measured in-process on the shared 2-core VM (2026-12-05): ``admit`` with a key and an address
    1.24 us (``python -m abplatform.ratelimit`` prints it again); the whole middleware per API
    request 1.9 us with a key, 1.2 us without, 0.17 us on other paths; a refusal (building the
    429) ~11 us. Against a recommendation's ~500 us of Python that is under 0.4 %.
    """

    def __init__(self, max_entries: int = _MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self.keys: dict[Hashable, list[float]] = {}
        self.addrs: dict[Hashable, list[float]] = {}
        self.failures: dict[Hashable, list[float]] = {}

    def reset(self) -> None:
        with self._lock:
            self.keys.clear()
            self.addrs.clear()
            self.failures.clear()

    @staticmethod
    def _level(table: dict[Hashable, list[float]], ident: Hashable, rate: Rate, now: float) -> list[float]:
        bucket = table.get(ident)
        if bucket is None:
            bucket = table[ident] = [rate.burst, now]
        else:
            bucket[0] = min(rate.burst, bucket[0] + (now - bucket[1]) * rate.per_s)
            bucket[1] = now
        return bucket

    def _prune(self, table: dict[Hashable, list[float]], rate: Rate, now: float) -> None:
        """Drop full buckets (a full bucket is the same as none); if that is not enough, start over.

        Starting over lets a flood of fresh identities (addresses, made-up keys) through for a
        moment rather than growing without bound; the failure table keeps refusing the last ones.
        """
        full = [ident for ident, (tokens, stamp) in table.items()
                if tokens + (now - stamp) * rate.per_s >= rate.burst]
        for ident in full:
            del table[ident]
        if len(table) > self.max_entries * 0.9:
            table.clear()

    def admit(self, now: float, key: Hashable | None, key_rate: Rate, addr: Hashable, addr_rate: Rate,
              fail_rate: Rate) -> tuple[str, float] | None:
        """Take one token from the key's and the address's bucket, or none and say which refused and for how long.

        Returns None when admitted, else (which limit, seconds until a token is there).
        """
        with self._lock:
            if fail_rate.enabled and addr in self.failures:
                failures = self._level(self.failures, addr, fail_rate, now)
                if failures[0] < 1.0:
                    return "auth_failures", (1.0 - failures[0]) / fail_rate.per_s
            key_bucket = addr_bucket = None
            if key is not None and key_rate.enabled:
                key_bucket = self._level(self.keys, key, key_rate, now)
                if key_bucket[0] < 1.0:
                    return "key", (1.0 - key_bucket[0]) / key_rate.per_s
            if addr_rate.enabled:
                addr_bucket = self._level(self.addrs, addr, addr_rate, now)
                if addr_bucket[0] < 1.0:
                    return "addr", (1.0 - addr_bucket[0]) / addr_rate.per_s
            if key_bucket is not None:
                key_bucket[0] -= 1.0
                if len(self.keys) > self.max_entries:
                    self._prune(self.keys, key_rate, now)
            if addr_bucket is not None:
                addr_bucket[0] -= 1.0
                if len(self.addrs) > self.max_entries:
                    self._prune(self.addrs, addr_rate, now)
        return None

    def record_failure(self, now: float, addr: Hashable, fail_rate: Rate) -> None:
        """An authentication failure from ``addr``: one token of its failure budget (it may go into debt)."""
        with self._lock:
            self._level(self.failures, addr, fail_rate, now)[0] -= 1.0
            if len(self.failures) > self.max_entries:
                self._prune(self.failures, fail_rate, now)


# One table per process, shared by the site's and the player API's middleware chains.
BUCKETS = TokenBuckets()


def reset() -> None:
    """Forget every bucket (tests: each starts with full budgets)."""
    BUCKETS.reset()


def _address_key(addr: str) -> str:
    """The address a client is limited by: IPv4 as is, IPv6 by its /64 (one host usually owns all of it)."""
    if ":" not in addr:
        return addr
    try:
        return ipaddress.IPv6Address(addr.split("%", 1)[0]).packed[:8].hex()
    except ValueError:
        return addr


_REASONS = {
    "key": "rate limit of this API key exceeded ({rate:g} requests/s, burst {burst:g}, per server process)",
    "addr": "rate limit of this client address exceeded ({rate:g} requests/s, burst {burst:g}, per server process)",
    "auth_failures": "too many requests with a missing or wrong API key from this client address "
                     "({rate:g}/s, burst {burst:g}, per server process)",
}


_settings_version = [0]


@receiver(setting_changed)
def _rates_changed(setting: str, **_kwargs) -> None:
    """Only tests change settings at run time (pytest-django's ``settings``): a live server's middleware, built
    once, then reads the new limits on its next request."""
    if setting.startswith("RATE_LIMIT_"):
        _settings_version[0] += 1


class RateLimitMiddleware:
    """429 for API requests beyond their key's or address's budget; counts the address's 401s."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._load()

    def _load(self) -> None:
        """Read the limits; again whenever a test changes a setting (``setting_changed`` bumps the version)."""
        self._version = _settings_version[0]
        self.prefix: str = getattr(settings, "RATE_LIMIT_PATH_PREFIX", "/api/v1/")
        self.addr_header: str = getattr(settings, "RATE_LIMIT_ADDR_HEADER", "") or "REMOTE_ADDR"
        self.key_rate = Rate.from_settings("KEY", 1000.0)
        self.addr_rate = Rate.from_settings("ADDR", 200.0)
        self.fail_rate = Rate.from_settings("AUTH_FAIL", 1.0)
        self.rates = {"key": self.key_rate, "addr": self.addr_rate, "auth_failures": self.fail_rate}
        self.buckets = BUCKETS

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self._version != _settings_version[0]:
            self._load()
        if not request.path_info.startswith(self.prefix):
            return self.get_response(request)
        meta = request.META
        addr = _address_key(meta.get(self.addr_header) or meta.get("REMOTE_ADDR") or "")
        header = meta.get("HTTP_AUTHORIZATION", "")
        # hash(): the presented key's identity without keeping the secret itself as a dict key
        key = hash(header[len(API_KEY_PREFIX):].strip()) if header.startswith(API_KEY_PREFIX) else None
        refused = self.buckets.admit(time.monotonic(), key, self.key_rate, addr, self.addr_rate, self.fail_rate)
        if refused is not None:
            return self._too_many(*refused)
        response = self.get_response(request)
        if response.status_code == 401 and self.fail_rate.enabled:
            self.buckets.record_failure(time.monotonic(), addr, self.fail_rate)
        return response

    def _too_many(self, which: str, wait_s: float) -> HttpResponse:
        rate = self.rates[which]
        retry_after = max(1, math.ceil(wait_s))
        detail = _REASONS[which].format(rate=rate.per_s, burst=rate.burst) + f"; retry after {retry_after} s"
        response = HttpResponse(json.dumps({"detail": detail}), status=429, content_type="application/json")
        response["Retry-After"] = str(retry_after)
        return response


def _measure(rounds: int = 200_000) -> None:
    """Print the cost of one ``admit`` (a key and an address), the figure the class docstring quotes."""
    buckets, rate = TokenBuckets(), Rate(1e9, 1e9)
    keys = [hash(f"key-{i}") for i in range(100)]
    addrs = [f"10.0.{i // 256}.{i % 256}" for i in range(1000)]
    start = time.perf_counter()
    for i in range(rounds):
        buckets.admit(time.monotonic(), keys[i % 100], rate, addrs[i % 1000], rate, rate)
    elapsed = time.perf_counter() - start
    print(f"admit: {elapsed / rounds * 1e6:.2f} us per request ({rounds} rounds)")


if __name__ == "__main__":
    _measure()
