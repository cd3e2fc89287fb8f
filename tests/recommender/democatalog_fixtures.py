"""The tiny demo catalog for tests: ~60 tracks over all 14 styles, built once per machine.

Other helpers' tests get it into their test database with the ``tiny_demo_catalog``
fixture (tests/recommender/conftest.py) or by calling ``load_tiny_demo_catalog()`` from a
test that has database access. The audio and the parse cache live under ``var/`` so
that only the first run on a machine parses and renders (about 30 s on 2 cores); later
runs take a few seconds. A file lock keeps concurrent test sessions from building it
twice at once.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from recommender.democatalog import BuildConfig, BuildReport, build_demo_catalog

TINY_SIZE = 60
TINY_SEED = 0


def tiny_demo_dir() -> Path:
    return Path(settings.VAR_DIR) / "test-democatalog" / f"tiny-{TINY_SIZE}-seed{TINY_SEED}"


def demo_cache_dir() -> Path:
    return Path(settings.VAR_DIR) / "democache"


@contextmanager
def _build_lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_tiny_demo_files(workers: int = 2) -> BuildReport:
    """Build (or reuse) the tiny catalog's files; no database needed."""
    folder = tiny_demo_dir()
    with _build_lock(folder):
        return build_demo_catalog(BuildConfig(
            size=TINY_SIZE, seed=TINY_SEED, out_dir=folder, cache_dir=demo_cache_dir(), workers=workers,
            soundfont_fallback=settings.SOUNDFONT or None, progress=False,
        ))


def load_tiny_demo_catalog(report: BuildReport | None = None):
    """Put the tiny catalog (tracks, labels, document text, both splits) into the current database.

    Returns ``recommender.services.democatalog.DemoCatalogResult`` (``.tracks`` are the Track rows).
    """
    from recommender.services.democatalog import load_demo_build

    return load_demo_build(report or build_tiny_demo_files())
