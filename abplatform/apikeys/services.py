"""Creating API keys: a random prefix for lookup, a secret, and only the SHA-256 of the whole key stored."""

from __future__ import annotations

import hashlib
import secrets

from abplatform.apikeys.models import ApiKey

KEY_PREFIX_LEN = 8


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def api_key_create(*, name: str, scope: str = ApiKey.Scope.PLAYER) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is shown once and never stored.

    ``player`` (the default) is what ships inside client apps; ``analyst`` also reads results.
    """
    if scope not in ApiKey.Scope.values:
        raise ValueError(f"scope must be one of {ApiKey.Scope.values}, got {scope!r}")
    prefix = secrets.token_hex(KEY_PREFIX_LEN // 2)
    key = f"{prefix}.{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(name=name, scope=scope, prefix=prefix, key_hash=hash_api_key(key))
    return api_key, key
