"""Knowledge-base fixtures: a KB built once per session from the bundled laws, one per backend.

Retrieval tests take the `kb` fixture and only use the `KnowledgeStore` interface, so every such test runs on
each backend in BACKENDS: SQLite (a file) and PostgreSQL (a real server this session starts, see
postgres_server.py). Without PostgreSQL installed the postgres cases skip locally and fail in CI (CI=true),
as the browser tests do: `make test` installs it (scripts/system-deps.sh).
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest

BACKENDS = ["sqlite", "postgres"]
_copies = itertools.count()


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server on a free 127.0.0.1 port for the session (Debian's postgresql), stopped at the end."""
    from postgres_server import PostgresServer

    try:
        import psycopg  # noqa: F401

        server = PostgresServer.start()
    except (ImportError, FileNotFoundError) as error:
        reason = f"PostgreSQL backend: {error} (`make test` installs psycopg and Debian's postgresql)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield server
    server.stop()


def _build(backend: str, folder: Path, request) -> Path | str:
    from lawtune.kb.build import build

    if backend == "sqlite":
        path = folder / "kb.sqlite"
        build([], path)  # no sources: the bundled laws
        return path
    if backend == "postgres":
        url = request.getfixturevalue("postgres_server").create_database("kb")
        build([], url)
        return url
    raise ValueError(backend)


@pytest.fixture(scope="session", params=BACKENDS)
def built_kb(request, tmp_path_factory) -> tuple[str, Path | str]:
    """(backend name, location) of a KB over the bundled laws; read-only for the tests that share it."""
    return request.param, _build(request.param, tmp_path_factory.mktemp(f"kb-{request.param}"), request)


@pytest.fixture
def kb(built_kb):
    """The session KB opened for one test (read-only use)."""
    from lawtune.kb import open_store

    _backend, location = built_kb
    store = open_store(location)
    yield store
    store.close()


@pytest.fixture
def writable_kb(built_kb, tmp_path, request):
    """A private copy of the session KB that a test may add to."""
    from lawtune.kb import open_store

    backend, location = built_kb
    if backend == "postgres":  # a file-level copy of the session database (it has no open connection now)
        server, name = request.getfixturevalue("postgres_server"), f"kb_copy_{next(_copies)}"
        copy = server.create_database(name, template="kb")
    else:
        copy = tmp_path / location.name
        shutil.copy(location, copy)
    store = open_store(copy)
    yield store
    store.close()
    if backend == "postgres":
        server.drop_database(name)
