"""The ``web`` source: polite fetching of pages about a track and extraction of their main text.

``WebFetcher`` is the crawler part. It obeys robots.txt (protego, parsed once per host
and cached; a robots.txt that cannot be fetched because the server fails means "disallow
all", as RFC 9309 says), waits between requests to the same host (the larger of our own
interval and the host's Crawl-delay), retries 5xx, 429 and timeouts with exponential
backoff (honouring Retry-After), streams the body and stops at a size cap, accepts HTML
only, decodes pages that are not UTF-8 (header, then <meta>, then detection), and caches
successful pages on disk by URL so that a re-run fetches nothing.

``WebSource`` turns pages into descriptions: URLs come from the track's metadata (a
``url``/``urls`` column) and from URL templates per site (``{title_slug}``…); trafilatura
extracts the main text, which is split into paragraph-sized chunks that mining judges.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import charset_normalizer
import httpx
from protego import Protego

from .text import split_paragraphs
from .types import SerialFetchMixin, SourcedDescription, SourceName, SourceResult, TrackInfo

HTML_TYPES = ("text/html", "application/xhtml+xml")
RETRY_STATUSES = {429, 500, 502, 503, 504}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 5
# WHATWG: browsers decode these labels as windows-1252, and so do pages written for them.
WINDOWS_1252_ALIASES = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "ascii", "us-ascii"}
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class FetchError(Exception):
    """A page that could not be used; ``reason`` is short and stable (it is stored and counted)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class _RetryableError(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class WebConfig:
    user_agent: str = "CrossMuSimBot/0.1 (music description sourcing; +https://example.invalid/crossmusim)"
    timeout_s: float = 10.0
    max_bytes: int = 2_000_000
    min_interval_s: float = 1.0
    max_crawl_delay_s: float = 30.0
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    cache_dir: Path | None = None
    respect_robots: bool = True


@dataclass
class FetchedPage:
    url: str
    final_url: str
    status: int
    content_type: str
    encoding: str
    html: str
    from_cache: bool = False
    attempts: int = 0
    details: dict = field(default_factory=dict)


def decode_html(body: bytes, content_type: str = "") -> tuple[str, str]:
    """Decode a page: BOM, then the Content-Type charset, then <meta charset>, then UTF-8, then detection."""
    for bom, name in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if body.startswith(bom):
            return body[len(bom):].decode(name, errors="replace"), name
    declared = _charset_param(content_type)
    if not declared:
        match = _META_CHARSET.search(body[:4096])
        declared = match.group(1).decode("ascii", "ignore") if match else ""
    if declared:
        name = "cp1252" if declared.lower() in WINDOWS_1252_ALIASES else declared
        try:
            return body.decode(name, errors="replace"), name.lower()
        except LookupError:
            pass
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(body).best()
    if best is not None and best.encoding:
        return str(best), best.encoding
    return body.decode("cp1252", errors="replace"), "cp1252"


def _charset_param(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip("\"'")
    return ""


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class WebFetcher:
    """A polite HTTP fetcher for HTML pages (see the module docstring). Thread-safe."""

    def __init__(self, config: WebConfig | None = None, client: httpx.Client | None = None):
        self.config = config or WebConfig()
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(self.config.timeout_s),
            follow_redirects=False,
            headers={"User-Agent": self.config.user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9"},
        )
        self._robots: dict[str, Protego | None] = {}
        self._next_allowed: dict[str, float] = {}
        self._lock = threading.Lock()
        self.requests_sent = 0

    def close(self) -> None:
        self.client.close()

    # -- public -----------------------------------------------------------------------------------------
    def fetch(self, url: str) -> FetchedPage:
        """Return the page at ``url`` (from the cache when present) or raise ``FetchError`` with a reason."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise FetchError("bad url", url)
        cached = self._cache_read(url)
        if cached is not None:
            return cached
        # Redirects are followed by hand so that robots.txt is checked for every hop, on every host.
        current, attempts = url, 0
        for _hop in range(MAX_REDIRECTS + 1):
            if self.config.respect_robots and not self._allowed(current):
                raise FetchError("disallowed by robots.txt", current)
            status, headers, body, final_url, tries = self._get_with_retries(current, html_only=True)
            attempts += tries
            if status not in REDIRECT_STATUSES:
                break
            location = headers.get("location", "")
            current = urllib.parse.urljoin(current, location)
            if not location or urllib.parse.urlsplit(current).scheme not in ("http", "https"):
                raise FetchError("bad redirect", location)
        else:
            raise FetchError("too many redirects", url)
        content_type = headers.get("content-type", "")
        page_html, encoding = decode_html(body, content_type)
        page = FetchedPage(url, final_url, status, content_type, encoding, page_html, attempts=attempts)
        self._cache_write(page)
        return page

    # -- robots.txt -------------------------------------------------------------------------------------
    def _allowed(self, url: str) -> bool:
        parsed = urllib.parse.urlsplit(url)
        host_key = f"{parsed.scheme}://{parsed.netloc}"
        with self._lock:
            known = host_key in self._robots
        if not known:
            rules = self._load_robots(host_key)
            with self._lock:
                self._robots[host_key] = rules
        rules = self._robots[host_key]
        if rules is None:  # robots.txt missing (4xx): everything allowed
            return True
        return rules.can_fetch(url, self.config.user_agent)

    def _load_robots(self, host_key: str) -> Protego | None:
        try:
            status, _headers, body, _final, _attempts = self._get_with_retries(
                host_key + "/robots.txt", html_only=False, fail_on_4xx=False, follow_redirects=True)
        except FetchError:
            # Unreachable robots.txt (5xx or network failure after retries): assume complete disallow.
            return Protego.parse("User-agent: *\nDisallow: /")
        if 400 <= status < 500:
            return None
        return Protego.parse(body.decode("utf-8", errors="replace"))

    def _crawl_delay(self, host_key: str) -> float:
        rules = self._robots.get(host_key)
        delay = rules.crawl_delay(self.config.user_agent) if rules is not None else None
        return min(float(delay), self.config.max_crawl_delay_s) if delay else 0.0

    # -- HTTP -------------------------------------------------------------------------------------------
    def _wait_turn(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        host_key = f"{parsed.scheme}://{parsed.netloc}"
        interval = max(self.config.min_interval_s, self._crawl_delay(host_key))
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_allowed.get(host_key, 0.0))
            self._next_allowed[host_key] = start + interval
        if start > now:
            time.sleep(start - now)

    def _get_with_retries(self, url: str, *, html_only: bool, fail_on_4xx: bool = True,
                          follow_redirects: bool = False):
        attempts = 0
        while True:
            attempts += 1
            try:
                status, headers, body, final_url = self._get_once(
                    url, html_only=html_only, fail_on_4xx=fail_on_4xx, follow_redirects=follow_redirects)
                return status, headers, body, final_url, attempts
            except _RetryableError as retry:
                if attempts > self.config.max_retries:
                    raise FetchError(retry.reason, f"after {attempts} attempts") from None
                backoff = min(self.config.backoff_s * (2 ** (attempts - 1)), self.config.max_backoff_s)
                if retry.retry_after is not None:
                    backoff = min(max(backoff, retry.retry_after), self.config.max_backoff_s)
                time.sleep(backoff)

    def _get_once(self, url: str, *, html_only: bool, fail_on_4xx: bool, follow_redirects: bool):
        self._wait_turn(url)
        started = time.monotonic()
        deadline = started + self.config.timeout_s * 3  # a server that drips bytes must not hold us forever
        try:
            with self.client.stream("GET", url, follow_redirects=follow_redirects) as response:
                self.requests_sent += 1
                status = response.status_code
                if status in REDIRECT_STATUSES and not follow_redirects:
                    return status, dict(response.headers), b"", str(response.url)
                if status in RETRY_STATUSES:
                    raise _RetryableError(f"HTTP {status}", _retry_after_seconds(response.headers.get("retry-after")))
                if status >= 400:
                    if fail_on_4xx:
                        raise FetchError(f"HTTP {status}", url)
                    return status, dict(response.headers), b"", str(response.url)
                content_type = response.headers.get("content-type", "")
                media_type = content_type.split(";")[0].strip().lower()
                if html_only and media_type not in HTML_TYPES:
                    raise FetchError("not HTML", media_type or "no content type")
                length = response.headers.get("content-length")
                if length and length.isdigit() and int(length) > self.config.max_bytes:
                    raise FetchError("too large", f"Content-Length {length} > {self.config.max_bytes}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > self.config.max_bytes:
                        raise FetchError("too large", f"more than {self.config.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise _RetryableError("timeout")
                return status, dict(response.headers), bytes(body), str(response.url)
        except httpx.TimeoutException:
            raise _RetryableError("timeout") from None
        except httpx.TransportError as error:
            raise _RetryableError("connection error", None) from error

    # -- cache ------------------------------------------------------------------------------------------
    def _cache_path(self, url: str) -> Path | None:
        if self.config.cache_dir is None:
            return None
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return Path(self.config.cache_dir) / digest[:2] / f"{digest}.json"

    def _cache_read(self, url: str) -> FetchedPage | None:
        path = self._cache_path(url)
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return FetchedPage(**{**data, "from_cache": True, "attempts": 0})

    def _cache_write(self, page: FetchedPage) -> None:
        path = self._cache_path(page.url)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in page.__dict__.items() if k not in ("from_cache", "attempts")}
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)


class _TemplateFields(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _slug(value: str, sep: str) -> str:
    return re.sub(r"\s+", sep, value.strip())


def render_url_templates(track: TrackInfo, templates: dict[str, str]) -> list[tuple[str, str]]:
    """``(site, url)`` for every template whose fields the track has (a template needing a missing field is skipped).

    Fields: {title} {composer} {collection} (URL-quoted), {title_slug} {composer_slug}
    (spaces as underscores, wiki style), {title_q} {composer_q} (query-string quoted),
    and any label as {label_<name>}.
    """
    raw = {"title": track.title, "composer": track.composer, "collection": track.collection}
    raw.update({f"label_{key}": track.label(key) for key in track.labels})
    fields = _TemplateFields()
    for key, value in raw.items():
        fields[key] = urllib.parse.quote(value, safe="")
        fields[f"{key}_slug"] = urllib.parse.quote(_slug(value, "_"), safe="")
        fields[f"{key}_q"] = urllib.parse.quote_plus(value)
    rendered = []
    for site, template in templates.items():
        names = re.findall(r"{(\w+)}", template)
        if any(not fields.get(name) for name in names):
            continue
        rendered.append((site, template.format_map(fields)))
    return rendered


def track_urls_from_metadata(metadata: dict) -> list[str]:
    """URLs from a catalog's URL columns ``url``, ``urls``, ``web_url``, ``source_url`` (list or separated string)."""
    urls: list[str] = []
    for key in ("url", "urls", "web_url", "source_url", "source_urls"):
        value = metadata.get(key)
        if isinstance(value, str):
            value = re.split(r"[\s,;|]+", value)
        if isinstance(value, list | tuple):
            urls.extend(str(v).strip() for v in value if str(v).strip().startswith(("http://", "https://")))
    return list(dict.fromkeys(urls))


class WebSource(SerialFetchMixin):
    """Descriptions from web pages (serial: the per-host rate limit is the bottleneck, not the CPU)."""

    name = SourceName.WEB

    def __init__(self, fetcher: WebFetcher, url_templates: dict[str, str] | None = None,
                 max_chunks_per_page: int = 12):
        self.fetcher = fetcher
        self.url_templates = dict(url_templates or {})
        self.max_chunks_per_page = max_chunks_per_page

    def units(self, track: TrackInfo) -> list[str]:
        urls = list(track.urls) + [url for _site, url in render_url_templates(track, self.url_templates)]
        return list(dict.fromkeys(urls))

    def fetch(self, track: TrackInfo, unit: str) -> SourceResult:
        try:
            page = self.fetcher.fetch(unit)
        except FetchError as error:
            return SourceResult(self.name, unit, error=error.reason, details={"detail": error.detail})
        text = extract_main_text(page.html, page.final_url)
        details = {"final_url": page.final_url, "encoding": page.encoding, "from_cache": page.from_cache,
                   "attempts": page.attempts}
        if not text:
            return SourceResult(self.name, unit, error="no main text", details=details)
        title_match = _TITLE.search(page.html)
        page_title = " ".join(title_match.group(1).split()) if title_match else ""
        chunks = split_paragraphs(text)[: self.max_chunks_per_page]
        descriptions = [
            SourcedDescription(text=chunk, source=self.name, origin=unit,
                               details={"chunk": index, "page_title": page_title, "final_url": page.final_url})
            for index, chunk in enumerate(chunks)
        ]
        return SourceResult(self.name, unit, descriptions=descriptions, details=details)


def extract_main_text(page_html: str, url: str = "") -> str:
    """The article text of a page without navigation, banners and footers (trafilatura)."""
    import trafilatura  # imported lazily: it pulls lxml and justext, which only the web source needs

    text = trafilatura.extract(page_html, url=url or None, include_comments=False, include_tables=False,
                               favor_recall=True)
    return text or ""
