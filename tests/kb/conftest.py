"""Knowledge-base fixtures: a KB built once per session from the bundled laws, one per backend.

Retrieval tests take the `kb` fixture and only use the `KnowledgeStore` interface, so a PostgreSQL backend
runs the same tests by adding its name to BACKENDS and a branch to `_build`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

BACKENDS = ["sqlite"]


def _build(backend: str, folder: Path) -> Path:
    from lawtune.kb.build import build

    if backend == "sqlite":
        path = folder / "kb.sqlite"
        build([], path)  # no sources: the bundled laws
        return path
    raise ValueError(backend)


@pytest.fixture(scope="session", params=BACKENDS)
def built_kb(request, tmp_path_factory) -> tuple[str, Path]:
    """(backend name, location) of a KB over the bundled laws; read-only for the tests that share it."""
    return request.param, _build(request.param, tmp_path_factory.mktemp(f"kb-{request.param}"))


@pytest.fixture
def kb(built_kb):
    """The session KB opened for one test (read-only use)."""
    from lawtune.kb import open_store

    _backend, location = built_kb
    store = open_store(location)
    yield store
    store.close()


@pytest.fixture
def writable_kb(built_kb, tmp_path):
    """A private copy of the session KB that a test may add to."""
    from lawtune.kb import open_store

    _backend, location = built_kb
    copy = tmp_path / location.name
    shutil.copy(location, copy)
    store = open_store(copy)
    yield store
    store.close()
