"""Shared fixtures of the recommender tests: the tiny demo catalog (see democatalog_fixtures.py)."""

from __future__ import annotations

import pytest

from tests.recommender.democatalog_fixtures import build_tiny_demo_files, load_tiny_demo_catalog


@pytest.fixture(scope="session")
def tiny_demo_build():
    """The tiny demo catalog's files and build report (built once per machine, then reused)."""
    return build_tiny_demo_files()


@pytest.fixture
def tiny_demo_catalog(db, tiny_demo_build):
    """The tiny demo catalog loaded into the test database: a ``DemoCatalogResult`` (``.tracks``, ``.build``)."""
    return load_tiny_demo_catalog(tiny_demo_build)
