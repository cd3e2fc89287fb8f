"""The ``llm`` source: prompts carrying a track's metadata to any OpenAI-compatible Chat Completions server.

One client for OpenAI, vLLM, Ollama and llama.cpp's server: ``POST {LLM_BASE_URL}/chat/completions``
with a bearer key. Each track is described from five perspectives (style/genre, mood,
instrumentation/timbre, rhythm/tempo, listening context); the prompt carries title,
composer, collection, tune type, key, meter, tempo, instruments and any text already
sourced for the track. The answer must be JSON ``{"descriptions": ["…", …]}``; an answer
that does not validate is asked again, then recorded as a failure. A 429 waits for its
Retry-After, timeouts and 5xx are retried with backoff, at most ``concurrency`` requests
are in flight, tokens are counted, and every valid answer is cached on disk under the
SHA-256 of the request, so a re-run sends no request at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .text import normalise_text, words
from .types import Perspective, SourcedDescription, SourceName, SourceResult, TrackInfo
from .web import _retry_after_seconds

PROMPT_VERSION = "v1"
SYSTEM_PROMPT = (
    "You write short, factual descriptions of how a piece of music sounds, for a music search engine. "
    "Use only the metadata you are given and general knowledge of the style; do not invent performers, "
    "recordings or dates. Answer with JSON only, of the form {\"descriptions\": [\"...\", \"...\"]}."
)
PERSPECTIVE_ASKS = {
    Perspective.STYLE: "its style and genre: the tradition it belongs to, its form, and what marks it as such",
    Perspective.MOOD: "its mood and emotional character, as a listener would feel it",
    Perspective.INSTRUMENTATION: "its instrumentation and timbre: which instruments, how they sound together",
    Perspective.RHYTHM: "its rhythm and tempo: meter, pulse, speed, and how it moves",
    Perspective.CONTEXT: "the listening context it suits: where, when and for what it would be played",
}
MIN_WORDS, MAX_WORDS = 6, 80


class LLMError(Exception):
    """A request that failed for good; ``reason`` is short and stable (it is stored and counted)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _flag(value: object) -> bool:
    """A switch given as a bool or as text: "0", "false" and "no" (any case) are off, anything else on."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("0", "false", "no")


@dataclass
class LLMConfig:
    base_url: str
    model: str = "gpt-4o-mini"
    api_key: str = ""
    timeout_s: float = 60.0
    concurrency: int = 4
    max_retries: int = 3
    validation_retries: int = 1
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    temperature: float = 0.7
    max_tokens: int = 400
    json_mode: bool = True
    descriptions_per_prompt: int = 2
    cache_dir: Path | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, object], **overrides: object) -> LLMConfig | None:
        """The config from the keys LLM_BASE_URL, LLM_API_KEY, LLM_MODEL (+ LLM_TIMEOUT, LLM_CONCURRENCY,
        LLM_MAX_RETRIES, LLM_JSON_MODE, LLM_CACHE_DIR) of ``values``; ``None`` when LLM_BASE_URL is empty or absent
        (no LLM configured). Absent or empty keys keep the defaults above.

        The caller passes the values (the platform its Django settings): the core reads no environment, so what
        configures it is visible at the call. Values may be strings or already typed (a bool LLM_JSON_MODE).
        """
        base_url = str(values.get("LLM_BASE_URL") or "").strip()
        if not base_url:
            return None
        config: dict[str, object] = {
            "base_url": base_url,
            "model": str(values.get("LLM_MODEL") or "").strip() or cls.model,
            "api_key": str(values.get("LLM_API_KEY") or "").strip(),
            "timeout_s": float(values.get("LLM_TIMEOUT", cls.timeout_s)),
            "concurrency": int(values.get("LLM_CONCURRENCY", cls.concurrency)),
            "max_retries": int(values.get("LLM_MAX_RETRIES", cls.max_retries)),
            "json_mode": _flag(values.get("LLM_JSON_MODE", True)),
        }
        if values.get("LLM_CACHE_DIR"):
            config["cache_dir"] = Path(str(values["LLM_CACHE_DIR"]))
        config.update(overrides)
        return cls(**config)

    @property
    def endpoint(self) -> str:
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"


@dataclass
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    cache_hits: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens, "requests": self.requests, "cache_hits": self.cache_hits}


@dataclass
class Completion:
    descriptions: list[str]
    prompt_hash: str
    from_cache: bool
    usage: dict = field(default_factory=dict)
    model: str = ""


def parse_descriptions(content: str, *, max_items: int = 5) -> list[str]:
    """Validate an answer: JSON (code fences and text around the object tolerated) with a list of descriptions.

    Raises ``ValueError`` with the reason when the answer does not validate.
    """
    text = content.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    if not text.startswith(("{", "[")):
        start = text.find("{")
        if start < 0:
            raise ValueError("no JSON object in the answer")
        end = text.rfind("}")
        text = text[start:end + 1] if end > start else text[start:]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"malformed JSON ({error.msg})") from None
    items = data.get("descriptions", data.get("description")) if isinstance(data, dict) else data
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list) or not items:
        raise ValueError("JSON has no 'descriptions' list")
    out = []
    for item in items[:max_items]:
        if isinstance(item, dict):
            item = item.get("text") or item.get("description") or ""
        if not isinstance(item, str):
            continue
        item = " ".join(normalise_text(item).split())
        if MIN_WORDS <= len(words(item)) <= MAX_WORDS:
            out.append(item)
    if not out:
        raise ValueError(f"no description of {MIN_WORDS}-{MAX_WORDS} words in the answer")
    return out


class ChatCompletionsClient:
    """A small, thread-safe OpenAI-compatible client with retries, a concurrency limit and a prompt cache."""

    def __init__(self, config: LLMConfig, client: httpx.Client | None = None):
        self.config = config
        headers = {"Content-Type": "application/json"}
        if config.api_key:
            headers["Authorization"] = f"Bearer {config.api_key}"
        self.client = client or httpx.Client(timeout=httpx.Timeout(config.timeout_s), headers=headers)
        self._slots = threading.BoundedSemaphore(max(1, config.concurrency))
        self._lock = threading.Lock()
        self.usage = TokenUsage()
        # Some servers (older llama.cpp, some proxies) answer 400 to response_format: then it is left out.
        self.json_mode_rejected = False

    def close(self) -> None:
        self.client.close()

    def request_body(self, messages: list[dict]) -> dict:
        body = {"model": self.config.model, "messages": messages, "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens}
        if self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    @staticmethod
    def prompt_hash(body: dict) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()

    def complete_descriptions(self, messages: list[dict]) -> Completion:
        """Ask for descriptions; cached answers come back without a request. Raises ``LLMError`` on failure."""
        body = self.request_body(messages)
        key = self.prompt_hash(body)
        cached = self._cache_read(key)
        if cached is not None:
            with self._lock:
                self.usage.cache_hits += 1
            return Completion(cached["descriptions"], key, True, cached.get("usage", {}), cached.get("model", ""))
        last_reason = ""
        for _attempt in range(1 + self.config.validation_retries):
            data = self._post(body)
            usage = data.get("usage") or {}
            with self._lock:
                self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
            try:
                content = data["choices"][0]["message"]["content"] or ""
            except (KeyError, IndexError, TypeError):
                last_reason = "no message in the answer"
                continue
            try:
                descriptions = parse_descriptions(content)
            except ValueError as error:
                last_reason = str(error)
                continue
            completion = Completion(descriptions, key, False, usage, str(data.get("model") or self.config.model))
            self._cache_write(key, {"descriptions": descriptions, "usage": usage, "model": completion.model,
                                    "request": body})
            return completion
        raise LLMError("invalid answer", last_reason)

    def _post(self, body: dict) -> dict:
        """POST with retries. The cache key is always the logical request; what is sent may omit response_format."""
        attempts = 0
        while True:
            attempts += 1
            retry_after = None
            sent = {k: v for k, v in body.items() if k != "response_format"} if self.json_mode_rejected else body
            with self._slots:
                try:
                    with self._lock:
                        self.usage.requests += 1
                    response = self.client.post(self.config.endpoint, json=sent)
                except httpx.TimeoutException:
                    reason = "timeout"
                except httpx.TransportError as error:
                    reason = f"connection error ({type(error).__name__})"
                else:
                    if response.status_code == 200:
                        try:
                            return response.json()
                        except ValueError:
                            reason = "response is not JSON"
                    elif response.status_code == 429 or response.status_code >= 500:
                        reason = f"HTTP {response.status_code}"
                        retry_after = _retry_after_seconds(response.headers.get("retry-after"))
                    elif response.status_code == 400 and "response_format" in sent:
                        self.json_mode_rejected = True
                        attempts -= 1  # not the server's fault: ask again at once, without JSON mode
                        continue
                    else:
                        raise LLMError(f"HTTP {response.status_code}", response.text[:200])
            if attempts > self.config.max_retries:
                raise LLMError(reason, f"after {attempts} attempts")
            wait = min(self.config.backoff_s * (2 ** (attempts - 1)), self.config.max_backoff_s)
            if retry_after is not None:
                wait = min(retry_after, self.config.max_backoff_s)
            time.sleep(wait)  # outside the slot: a waiting request does not block the others

    def _cache_path(self, key: str) -> Path | None:
        if self.config.cache_dir is None:
            return None
        return Path(self.config.cache_dir) / key[:2] / f"{key}.json"

    def _cache_read(self, key: str) -> dict | None:
        path = self._cache_path(key)
        if path is None or not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _cache_write(self, key: str, data: dict) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)


def track_facts(track: TrackInfo) -> list[str]:
    """The metadata lines a prompt carries (only those the catalog has)."""
    facts = [("Title", track.title), ("Composer", track.composer or track.label("composer")),
             ("Collection", track.collection or track.label("collection")), ("Style", track.label("style")),
             ("Tune type", track.label("tune_type")), ("Key", track.label("key")), ("Mode", track.label("mode")),
             ("Meter", track.label("meter")), ("Tempo (BPM)", track.label("tempo_bpm")),
             ("Instruments", ", ".join(track.instruments)), ("Region", track.label("region"))]
    return [f"{name}: {value}" for name, value in facts if value]


def build_messages(track: TrackInfo, perspective: str, *, sourced_text: list[str] | None = None,
                   count: int = 2) -> list[dict]:
    """The chat messages for one track and one perspective."""
    lines = track_facts(track)
    context = ""
    if sourced_text:
        snippets = [" ".join(text.split())[:400] for text in sourced_text[:3]]
        context = "\nText already known about it:\n" + "\n".join(f"- {s}" for s in snippets)
    user = (
        "Piece of music:\n" + "\n".join(lines) + context + "\n\n"
        f"Write {count} different descriptions (one or two sentences each, 10-50 words) of "
        f"{PERSPECTIVE_ASKS[perspective]}. "
        "Describe the sound, not the metadata fields. "
        'Answer with JSON only: {"descriptions": ["...", "..."]}'
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


class LLMSource:
    """Descriptions from an LLM, one unit per perspective; ``fetch_many`` runs units concurrently."""

    name = SourceName.LLM

    def __init__(self, client: ChatCompletionsClient, perspectives: tuple[str, ...] = Perspective.ALL,
                 sourced_text: dict | None = None):
        self.client = client
        self.perspectives = perspectives
        # track_id -> texts already sourced (document/web), given to the prompt as context
        self.sourced_text = sourced_text or {}

    def units(self, track: TrackInfo) -> list[str]:
        return [f"prompt:{perspective}:{PROMPT_VERSION}" for perspective in self.perspectives]

    def fetch(self, track: TrackInfo, unit: str) -> SourceResult:
        perspective = unit.split(":")[1]
        messages = build_messages(track, perspective, sourced_text=self.sourced_text.get(track.track_id),
                                  count=self.client.config.descriptions_per_prompt)
        try:
            completion = self.client.complete_descriptions(messages)
        except LLMError as error:
            return SourceResult(self.name, unit, error=error.reason, details={"detail": error.detail})
        details = {"prompt_hash": completion.prompt_hash, "model": completion.model, "cached": completion.from_cache,
                   "usage": completion.usage}
        descriptions = [
            SourcedDescription(text=text, source=self.name, origin=f"{unit}#{index}", perspective=perspective,
                               details={"prompt_hash": completion.prompt_hash, "model": completion.model,
                                        "prompt_version": PROMPT_VERSION})
            for index, text in enumerate(completion.descriptions)
        ]
        return SourceResult(self.name, unit, descriptions=descriptions, details=details)

    def fetch_many(self, work: Iterable[tuple[TrackInfo, str]]) -> Iterator[tuple[TrackInfo, str, SourceResult]]:
        workers = max(1, self.client.config.concurrency)
        window = workers * 8  # bounded look-ahead: a 100k-track catalog must not become 500k futures at once
        pending: deque = deque()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for track, unit in work:
                pending.append((track, unit, pool.submit(self.fetch, track, unit)))
                if len(pending) >= window:
                    done_track, done_unit, future = pending.popleft()
                    yield done_track, done_unit, future.result()
            while pending:
                done_track, done_unit, future = pending.popleft()
                yield done_track, done_unit, future.result()
