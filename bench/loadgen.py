"""A light open-loop HTTP load generator (asyncio, raw HTTP/1.1 keep-alive), for fixed request rates.

Open loop: request i is due at ``start + i / rate`` whether or not earlier ones have
answered, and its latency is measured from that scheduled time, so a stalled server shows
up as latency (no coordinated omission). Debian has ``wrk`` (closed loop) but not ``wrk2``.

    .venv/bin/python bench/loadgen.py --url http://127.0.0.1:8000/healthz --rate 400 --duration 10

Library use: ``run_open_loop(host, port, paths, headers, rate, duration)`` -> LoadResult.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 2)


@dataclass
class LoadResult:
    rate: float
    duration: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    answered_ms: list[float] = field(default_factory=list)  # 2xx only
    refused_ms: list[float] = field(default_factory=list)  # 429 / 503: the server said "not now"
    elapsed: float = 0.0
    max_connections_used: int = 0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))
        return ordered[index]

    @property
    def achieved_rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def summary(self) -> dict:
        return {
            "target_rps": self.rate, "achieved_rps": round(self.achieved_rps, 1), "sent": self.sent, "ok": self.ok,
            "errors": self.errors, "status": self.status_counts,
            **{f"p{q}".replace(".", "_"): round(self.percentile(q), 2) for q in (50, 95, 99, 99.9)},
            "max_ms": round(max(self.latencies_ms), 2) if self.latencies_ms else None,
            "connections": self.max_connections_used,
            "answered_p99": _p(self.answered_ms, 99), "refused": len(self.refused_ms),
            "refused_p99": _p(self.refused_ms, 99),
        }


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes, timeout: float) -> int:
        self.writer.write(raw)
        return await asyncio.wait_for(self._read_response(), timeout)

    async def _read_response(self) -> int:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


async def run_open_loop_async(host: str, port: int, paths: Sequence[str], headers: dict[str, str], rate: float,
                              duration: float, timeout: float = 5.0, max_connections: int = 512) -> LoadResult:
    result = LoadResult(rate=rate, duration=duration)
    header_text = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n{header_text}\r\n".encode() for p in paths]
    idle: list[_Connection] = []
    open_count = 0
    loop = asyncio.get_running_loop()
    total = int(rate * duration)
    pending: set[asyncio.Task] = set()

    async def one(scheduled: float, raw: bytes) -> None:
        nonlocal open_count
        for attempt in range(2):
            conn = None
            while idle and conn is None:
                candidate = idle.pop()
                conn = None if candidate.closed else candidate
            fresh = conn is None
            try:
                if conn is None:
                    if open_count >= max_connections:
                        raise ConnectionError("connection limit reached")
                    open_count += 1
                    result.max_connections_used = max(result.max_connections_used, open_count)
                    conn = _Connection(*await asyncio.open_connection(host, port))
                status = await conn.request(raw, timeout)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                if conn is not None:
                    conn.close()
                    open_count -= 1
                if attempt == 0 and not fresh:
                    continue  # a kept-alive connection the server had closed: retry once on a new one
                result.errors += 1
                return
            result.latencies_ms.append((loop.time() - scheduled) * 1000)
            result.status_counts[status] = result.status_counts.get(status, 0) + 1
            if 200 <= status < 300:
                result.ok += 1
                result.answered_ms.append(result.latencies_ms[-1])
            else:
                if status in (429, 503):
                    result.refused_ms.append(result.latencies_ms[-1])
                result.errors += 1
            if conn.closed:
                open_count -= 1
            else:
                idle.append(conn)
            return

    start = loop.time() + 0.05
    cycle = itertools.cycle(requests)
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due, next(cycle)))
        pending.add(task)
        task.add_done_callback(pending.discard)
        result.sent += 1
    if pending:
        await asyncio.wait(pending, timeout=timeout + 1)
    result.elapsed = loop.time() - start
    for conn in idle:
        conn.close()
    return result


def run_open_loop(host: str, port: int, paths: Sequence[str], headers: dict[str, str], rate: float,
                  duration: float, timeout: float = 5.0) -> LoadResult:
    return asyncio.run(run_open_loop_async(host, port, paths, headers, rate, duration, timeout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="http://host:port/path?query")
    parser.add_argument("--rate", type=float, default=400)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args()
    parts = urlsplit(args.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = dict(h.split(": ", 1) for h in args.header)
    started = time.perf_counter()
    result = run_open_loop(parts.hostname or "127.0.0.1", parts.port or 80, [path], headers, args.rate, args.duration)
    print(result.summary(), f"wall {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()


# --- CPU accounting -----------------------------------------------------------------------
# On a shared machine wall-clock rates depend on everyone else's load; the CPU time our own
# processes spend per request (or per event) does not, and 2 cores / that cost is the ceiling.

_TICK = __import__("os").sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = open(f"/proc/{pid}/stat").read()  # noqa: SIM115
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields after "pid (comm)"; [0] is the state


def cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICK if fields else 0.0  # utime + stime


def group_pids(pgid: int) -> list[int]:
    """Every process of a process group (a server started in its own session, with its workers)."""
    import os

    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields and int(fields[2]) == pgid:
                pids.append(int(name))
    return pids


def redis_pids() -> list[int]:
    """The embedded Redis (the broker), shared with every other Celery user of this machine."""
    from abplatform import embedded

    try:
        return [int((embedded.redis_dir() / "redis.pid").read_text().strip())]
    except (OSError, ValueError):
        return []


class CpuMeter:
    """CPU seconds used by named groups of processes between ``start()`` and ``stop()``."""

    def __init__(self, groups) -> None:
        self.groups = groups  # name -> callable returning the pids to count
        self.before: dict[str, dict[int, float]] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        return {name: {pid: cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        return {name: sum(t - self.before[name].get(pid, 0.0) for pid, t in after[name].items())
                for name in after}
