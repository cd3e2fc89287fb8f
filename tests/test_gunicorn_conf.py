"""The served gunicorn settings: each worker pinned to its own core (real gunicorn processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
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


def _run_gunicorn(workers: int, **env: str):
    return subprocess.Popen(
        [str(GUNICORN), "abplatform.wsgi", "-c", str(ROOT / "abplatform" / "gunicorn_conf.py"),
         "-b", f"127.0.0.1:{_free_port()}", "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "WEB_WORKERS": str(workers), "WEB_THREADS": "1", **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


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
