"""The platform's own LLM server: the shipped SmolLM2 behind the OpenAI-compatible API, started on demand.

With ``LLM_BASE_URL`` unset (and ``LLM_LOCAL`` on), a sourcing run calls :func:`ensure_local_llm`:
it finds the server this var dir already runs, or starts one
(``python -m recommender.crossmusim.descriptions.local_server``) detached, like the embedded
PostgreSQL and Redis, and waits until it answers. The server ends itself after
``LLM_LOCAL_IDLE_EXIT_S`` idle seconds; ``make stop`` ends it at once (:func:`stop_local_llm`).
The dequantised weights are kept under ``VAR_DIR/cache/llm-model`` so that later starts take ~5 s.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from django.conf import settings

from recommender.crossmusim.descriptions.local_llm import SHIPPED_MODEL_NAME

START_TIMEOUT_S = 300.0
LOCAL_LLM_NICE = 10


def local_llm_dir() -> Path:
    return Path(settings.VAR_DIR) / "llm"


def _pid() -> int | None:
    try:
        pid = int((local_llm_dir() / "server.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def running_local_llm() -> str | None:
    """The base URL of this var dir's local server when it runs and answers, else None."""
    port_file = local_llm_dir() / "port"
    if _pid() is None or not port_file.exists():
        return None
    port = int(port_file.read_text())
    return f"http://127.0.0.1:{port}/v1" if _healthy(port) else None


def ensure_local_llm(timeout_s: float = START_TIMEOUT_S) -> str:
    """The local server's base URL, starting the server first when none runs (one start at a time)."""
    directory = local_llm_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        url = running_local_llm()
        if url:
            return url
        port_file = directory / "port"
        port_file.unlink(missing_ok=True)
        log_dir = Path(settings.VAR_DIR) / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "recommender.crossmusim.descriptions.local_server", "--port", "0",
                   "--port-file", str(port_file), "--threads", str(settings.LLM_LOCAL_THREADS),
                   "--max-batch", str(settings.LLM_LOCAL_MAX_BATCH),
                   "--cache-dir", str(Path(settings.VAR_DIR) / "cache" / "llm-model"),
                   "--idle-exit", str(settings.LLM_LOCAL_IDLE_EXIT_S)]
        with open(log_dir / "llm-server.log", "ab") as log:
            # at low priority: the web workers and event ingestion share these cores and must not wait for it
            process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                       start_new_session=True, cwd=str(Path(__file__).resolve().parents[2]),
                                       preexec_fn=lambda: os.nice(LOCAL_LLM_NICE))
        (directory / "server.pid").write_text(str(process.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the local LLM server exited with {process.returncode}; see "
                                   f"{log_dir / 'llm-server.log'}")
            if port_file.exists():
                port = int(port_file.read_text())
                if _healthy(port):
                    return f"http://127.0.0.1:{port}/v1"
            time.sleep(0.5)
        process.terminate()
        raise RuntimeError(f"the local LLM server did not answer within {timeout_s:.0f} s")


def stop_local_llm() -> bool:
    """End this var dir's local server; True when one was running."""
    pid = _pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    (local_llm_dir() / "port").unlink(missing_ok=True)
    return True


def local_model_name() -> str:
    return SHIPPED_MODEL_NAME
