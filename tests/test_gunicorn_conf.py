"""The served gunicorn settings and WSGI entry point, in real gunicorn processes: each worker pinned to its own
core, its start-up heap frozen out of garbage collection, the player API behind the lean middleware chain."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(sys.executable).with_name("gunicorn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _allowed_cores(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def _workers_of(master: int, expected: int, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if len(children) == expected:
            time.sleep(1.0)  # post_fork has run once the worker is up; give it a moment
            return [int(pid) for pid in children]
        time.sleep(0.2)
    raise AssertionError(f"gunicorn did not start {expected} workers in {timeout} s")


def _run_gunicorn(workers: int, port: int | None = None, log=subprocess.DEVNULL, **env: str):
    level = "warning" if log is subprocess.DEVNULL else "info"
    return subprocess.Popen(
        [str(GUNICORN), "abplatform.wsgi", "-c", str(ROOT / "abplatform" / "gunicorn_conf.py"),
         "-b", f"127.0.0.1:{port or _free_port()}", "--log-level", level],
        cwd=ROOT, env={**os.environ, "WEB_WORKERS": str(workers), "WEB_THREADS": "1", **env},
        stdout=log, stderr=log,
    )


def _headers(url: str) -> dict[str, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return dict(response.headers)
    except urllib.error.HTTPError as error:  # 401 / 503 still carry the headers under test
        return dict(error.headers)


def test_each_worker_is_pinned_to_a_core_of_its_own_and_the_switch_turns_it_off():
    cores = sorted(os.sched_getaffinity(0))
    everything = _allowed_cores(os.getpid())
    workers = min(len(cores), 4)
    server = _run_gunicorn(workers)
    try:
        pinned = [_allowed_cores(pid) for pid in _workers_of(server.pid, workers)]
    finally:
        server.terminate()
        server.wait(30)
    if len(cores) >= 2:  # one core each, no two workers on the same one
        assert len(set(pinned)) == workers and set(pinned) <= {str(core) for core in cores}, pinned
    else:
        assert pinned == [everything]  # nothing to spread over

    server = _run_gunicorn(2, WEB_CPU_AFFINITY="0")
    try:
        unpinned = [_allowed_cores(pid) for pid in _workers_of(server.pid, 2)]
    finally:
        server.terminate()
        server.wait(30)
    assert unpinned == [everything, everything]


def test_workers_freeze_their_start_up_heap_and_the_player_api_skips_the_site_middleware(tmp_path):
    port, log_path = _free_port(), tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        server = _run_gunicorn(2, port=port, log=log)
        try:
            _workers_of(server.pid, 2)
            deadline = time.monotonic() + 30
            while log_path.read_text().count("frozen out of garbage collection") < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            api = _headers(f"http://127.0.0.1:{port}/api/v1/recommendations?user=u&seed_track=1")
            site = _headers(f"http://127.0.0.1:{port}/admin/login/")
        finally:
            server.terminate()
            server.wait(30)
    frozen = [line for line in log_path.read_text().splitlines() if "frozen out of garbage collection" in line]
    assert len(frozen) == 2, log_path.read_text()[-2000:]
    counts = [int(line.split(": ")[-1].split()[0]) for line in frozen]
    assert all(count > 50_000 for count in counts), counts  # Django + every view module, not an empty freeze
    # the API answered (401: no key) through the lean chain: security headers yes, no frame options or cookies
    assert api.get("X-Content-Type-Options") == "nosniff" and "X-Frame-Options" not in api, api
    assert "Set-Cookie" not in api and "WWW-Authenticate" in api, api
    # the admin went through the whole site chain
    assert site.get("X-Frame-Options") == "DENY" and "csrftoken" in site.get("Set-Cookie", ""), site
