"""Pytest plugin: run database tests on SQLite and on a real, throwaway PostgreSQL.

Register it with `pytest_plugins = ["tests.conftest_pg"]` in tests/conftest.py.
Missing PostgreSQL binaries make the postgresql cases FAIL (CI must really run them) unless
EDI_TEST_SKIP_PG=1, which turns them into skips for a developer machine without PostgreSQL.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

import edi.db
from tests.pgserver import PostgresServer, PostgresServerError, find_pg_bin

SKIP_ENV = "EDI_TEST_SKIP_PG"
_counter = itertools.count(1)


def _pg_unavailable(reason: str) -> None:
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"PostgreSQL ignoré ({SKIP_ENV}=1) : {reason}")
    pytest.fail(
        f"PostgreSQL requis pour ce test : {reason}. "
        f"Installez postgresql-15 (ou EDI_PG_BIN=dossier des binaires), "
        f"ou exportez {SKIP_ENV}=1 pour ignorer ces tests.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole session; stopped and deleted at the end."""
    if find_pg_bin() is None:
        _pg_unavailable("binaires initdb/pg_ctl/postgres introuvables")
    try:
        server = PostgresServer()
        server.start()
    except PostgresServerError as exc:
        _pg_unavailable(str(exc))
    try:
        yield server
    finally:
        edi.db.dispose_all()  # pooled connections would outlive the cluster otherwise
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A fresh, empty database URL for each test, on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'edi.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("pg_server")
        url = server.new_database(f"t{os.getpid()}_{next(_counter)}")
    try:
        yield url
    finally:
        edi.db.dispose_all()
