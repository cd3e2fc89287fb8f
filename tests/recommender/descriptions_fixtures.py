"""Real local HTTP servers for the description tests: a small web site and a Chat Completions endpoint.

Both are ``http.server`` servers on 127.0.0.1 with a random port, in a thread, that count
every request they receive, so a test can assert that a cached run sends none.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARTICLE_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>The Kesh - a jig</title></head><body>
<nav><a href="/">Home</a> | <a href="/tunes">Tunes</a> | <a href="/about">About</a></nav>
<div class="cookie-banner">We use cookies to improve your experience. Accept all cookies to continue.</div>
<article><h1>The Kesh</h1>
<p>The Kesh is a lively Irish jig in 6/8 time in G major, usually played on fiddle and flute at session tempo.
Its bouncing lilt of running triplets makes it a favourite opening tune for a set of jigs.</p>
<p>The melody moves in running quavers; the second part climbs into the high register of the fiddle before
falling back to the tonic, and players often add rolls and cuts as ornaments on the long notes.</p>
<p>Dancers know it from céilí nights, where it is played briskly, around 116 beats per minute, with a steady
piano or guitar accompaniment underneath the melody instruments.</p>
</article>
<footer>Copyright 2024 Tune Archive. All rights reserved. Licensed under Creative Commons BY-SA.</footer>
</body></html>"""

LATIN_TEXT = ("Café music in the Parisian style: a waltz for accordion and violin, with a gentle, "
              "swaying three-beat rhythm and a melody that sighs through the minor key. The musette "
              "accordion gives it a reedy, nostalgic timbre that recalls the dance halls of Montmartre.")


class RecordingServer:
    """A threaded HTTP server whose routes are functions of the request handler; counts requests per path."""

    def __init__(self, routes: dict[str, Callable]):
        self.routes = routes
        self.requests: Counter = Counter()
        self.times: dict[str, list[float]] = {}
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.state: dict = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _dispatch(self):
                path = self.path.split("?")[0]
                with server.lock:
                    server.requests[path] += 1
                    server.times.setdefault(path, []).append(time.monotonic())
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    route = server.routes.get(path)
                    if route is None:
                        send(self, 404, "text/html", b"<html><body>not found</body></html>")
                    else:
                        route(self, server)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def do_GET(self):  # noqa: N802 - http.server's naming
                self._dispatch()

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self.body = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    server.bodies.append(self.body)
                self._dispatch()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> RecordingServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, path: str) -> int:
        with self.lock:
            return self.requests[path]

    def total(self) -> int:
        with self.lock:
            return sum(self.requests.values())


def send(handler, status: int, content_type: str, body: bytes, extra: dict | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for key, value in (extra or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    # The client may stop reading (a refused content type, a timeout): that is its right.
    with contextlib.suppress(OSError):
        handler.wfile.write(body)


# --- the web site -------------------------------------------------------------------------------------
def _article(handler, server):
    send(handler, 200, "text/html; charset=utf-8", ARTICLE_HTML.encode("utf-8"))


def _flaky(handler, server):
    with server.lock:
        server.state["flaky"] = server.state.get("flaky", 0) + 1
        first = server.state["flaky"] == 1
    if first:
        send(handler, 500, "text/html", b"<html>server error</html>")
    else:
        _article(handler, server)


def _slow(handler, server):
    time.sleep(1.5)
    _article(handler, server)  # the client gave up long ago, as it should


def _huge(handler, server):
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Connection", "close")
    handler.end_headers()
    chunk = b"<p>" + b"la " * 20000 + b"</p>\n"
    sent = 0
    try:
        handler.wfile.write(b"<html><body>")
        while sent < 50_000_000:
            handler.wfile.write(chunk)
            sent += len(chunk)
        server.state["huge_completed"] = True
    except OSError:
        pass
    server.state["huge_sent"] = sent
    handler.close_connection = True


def _huge_declared(handler, server):
    handler.send_response(200)
    handler.send_header("Content-Type", "text/html")
    handler.send_header("Content-Length", "50000000")
    handler.send_header("Connection", "close")
    handler.end_headers()
    with contextlib.suppress(OSError):
        handler.wfile.write(b"<html>" + b" " * 1000)
    handler.close_connection = True


def _pdf(handler, server):
    send(handler, 200, "application/pdf", b"%PDF-1.4 not html at all " * 20)


def _meta_cp1252(handler, server):
    page = (f'<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
            f'<title>Valse musette</title></head><body><article><h1>Valse musette</h1><p>{LATIN_TEXT} '
            f'It is \u201cthe\u201d sound of the bal musette.</p></article></body></html>')
    send(handler, 200, "text/html", page.encode("cp1252"))


def _header_latin1(handler, server):
    page = f"<html><head><title>Valse</title></head><body><article><p>{LATIN_TEXT}</p></article></body></html>"
    send(handler, 200, "text/html; charset=ISO-8859-1", page.encode("latin-1"))


def _undeclared_latin1(handler, server):
    page = f"<html><head><title>Valse</title></head><body><article><p>{LATIN_TEXT} " \
           f"Très élégante, très française, à écouter au café.</p></article></body></html>"
    send(handler, 200, "text/html", page.encode("latin-1"))


def _robots(handler, server):
    send(handler, 200, "text/plain", b"User-agent: *\nDisallow: /private/\n")


def _redirect_to(target: str) -> Callable:
    def route(handler, server):
        send(handler, 302, "text/html", b"", {"Location": target})
    return route


def web_routes() -> dict[str, Callable]:
    return {
        "/old-article": _redirect_to("/article"),
        "/sneaky": _redirect_to("/private/article"),
        "/loop": _redirect_to("/loop"),
        "/robots.txt": _robots,
        "/article": _article,
        "/tunes/The_Kesh": _article,
        "/private/article": _article,
        "/flaky": _flaky,
        "/slow": _slow,
        "/huge": _huge,
        "/huge-declared": _huge_declared,
        "/score.pdf": _pdf,
        "/cp1252": _meta_cp1252,
        "/latin1": _header_latin1,
        "/undeclared": _undeclared_latin1,
    }


# --- the Chat Completions server ----------------------------------------------------------------------
PERSPECTIVE_WORDS = {
    "style and genre": ("a traditional Irish jig with a clear two-part tune form",
                        "a dance tune from the Irish session repertoire, in the style of the old collections"),
    "mood": ("a cheerful, bright and lively mood that lifts the room",
             "a playful, joyful character with a warm glow"),
    "instrumentation": ("the fiddle leads with a bright bowed tone over a percussive piano",
                        "a fiddle and piano duo, the bowed melody ringing over the chords"),
    "rhythm and tempo": ("a bouncing 6/8 rhythm at a brisk tempo, the triplets driving forward",
                         "a quick lilting pulse of running triplets, perfect for dancing"),
    "listening context": ("music for a céilí dance or a lively session in a pub",
                          "a tune for dancers at a wedding party or a festival evening"),
}


def _title(body: dict) -> str:
    user = next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "")
    match = re.search(r"^Title: (.*)$", user, re.MULTILINE)
    return match.group(1).strip() if match else ""


def _completion(content: str, model: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-test", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160},
    }).encode("utf-8")


def _chat(handler, server):
    body = handler.body
    title = _title(body)
    user = body["messages"][-1]["content"]
    model = body.get("model", "test-model")
    if title.startswith("Broken"):
        send(handler, 200, "application/json", _completion('Sure! {"descriptions": ["unterminated', model))
        return
    if title.startswith("Busy"):
        with server.lock:
            server.state[title] = server.state.get(title, 0) + 1
            first = server.state[title] == 1
        if first:
            send(handler, 429, "application/json", b'{"error": {"message": "rate limited"}}', {"Retry-After": "1"})
            return
    if title.startswith("Strict") and "response_format" in body:
        send(handler, 400, "application/json", b'{"error": "response_format is not supported"}')
        return
    if title.startswith("Sleepy"):
        time.sleep(2.0)
    if title.startswith("Slow"):
        time.sleep(0.2)
    texts = next((pair for ask, pair in PERSPECTIVE_WORDS.items() if ask in user), ("a tune", "a song"))
    content = json.dumps({"descriptions": [f"{title}: {texts[0]}.", f"In {title}, {texts[1]}."]})
    if title.startswith("Fenced"):
        content = f"Here you go:\n```json\n{content}\n```"
    send(handler, 200, "application/json", _completion(content, model))


def llm_routes() -> dict[str, Callable]:
    return {"/v1/chat/completions": _chat}


def make_track(title: str, **fields):
    """A Track row with the fields the description code reads (audio fields are placeholders)."""
    import hashlib

    from recommender.models import Track

    defaults = {"artist": "", "album": "", "duration_s": 25.0, "sample_rate": 16000,
                "checksum": hashlib.sha256(f"{title}-{fields}".encode()).hexdigest(),
                "audio_path": f"/nonexistent/{title}.wav", "labels": {}, "metadata": {}, "document_text": ""}
    defaults.update(fields)
    return Track.objects.create(title=title, **defaults)
