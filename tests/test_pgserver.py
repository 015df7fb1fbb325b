"""The throwaway PostgreSQL server and the db_url fixture: real server, real schema, real rows."""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

import edi.db
from edi.db import engine_for
from edi.db.models import Flow
from tests.pgserver import PostgresServer, find_pg_bin



@pytest.fixture(autouse=True)
def _dispose_engines():
    yield
    edi.db.dispose_all()


def _add_flow(url: str, **fields) -> int:
    # received_at given explicitly: sqlmodel 0.0.50 rejects the naive default of models.utcnow.
    fields.setdefault("received_at", datetime.now(timezone.utc))
    with Session(engine_for(url)) as s:
        flow = Flow(app="APP1", filename="FSO0001A_APP1_FLOW1.xml", **fields)
        s.add(flow)
        s.commit()
        return flow.id


def test_two_databases_are_separate(pg_server: PostgresServer):
    url_a = pg_server.new_database("pgserver_a")
    url_b = pg_server.new_database("pgserver_b")
    assert url_a.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert url_a.endswith("/pgserver_a") and url_b.endswith("/pgserver_b")

    flow_id = _add_flow(url_a, flow_key="APP1/FLOW1", flow_ref="FLOW1")
    engine_for(url_b)  # schema created, but no row

    with Session(engine_for(url_a)) as s:
        got = s.exec(select(Flow).where(Flow.flow_key == "APP1/FLOW1")).one()
        assert (got.id, got.flow_ref, got.state) == (flow_id, "FLOW1", "RECU")
    with Session(engine_for(url_b)) as s:
        assert s.exec(select(Flow)).all() == []
    assert engine_for(url_a).dialect.name == "postgresql"


def test_new_database_recreates_it_empty(pg_server: PostgresServer):
    url = pg_server.new_database("pgserver_again")
    _add_flow(url, flow_key="APP1/X")
    edi.db.dispose_all()  # open pooled connections are dropped by FORCE anyway
    url = pg_server.new_database("pgserver_again")
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'flow'").fetchone()
    assert tables == (0,)


def test_flow_round_trip(db_url: str):
    at = datetime(2026, 3, 1, 12, 30, 5, tzinfo=timezone.utc)
    flow_id = _add_flow(db_url, flow_key="APP1/FLOW9", size=1234, sha256="ab" * 32, received_at=at)
    edi.db.dispose_all()  # read back through a new connection, not the session's identity map
    with Session(engine_for(db_url)) as s:
        got = s.get(Flow, flow_id)
    assert (got.flow_key, got.size, got.sha256) == ("APP1/FLOW9", 1234, "ab" * 32)
    assert got.received_at == at


def test_flow_key_is_unique_but_null_repeats_are_allowed(db_url: str):
    _add_flow(db_url, flow_key="APP1/DUP")
    with pytest.raises(IntegrityError):
        _add_flow(db_url, flow_key="APP1/DUP")
    # A repeated FLOWID is stored with flow_key NULL (IRR_UNCITE): several must coexist.
    _add_flow(db_url, flow_key=None, error_code="IRR_UNCITE")
    _add_flow(db_url, flow_key=None, error_code="IRR_UNCITE")
    with Session(engine_for(db_url)) as s:
        assert len(s.exec(select(Flow)).all()) == 3


def test_server_stops_and_removes_its_files():
    if find_pg_bin() is None:
        pytest.skip("binaires PostgreSQL absents (le cas db_url[postgresql] échoue déjà)")
    with PostgresServer() as pg:
        root, port = pg.root, pg.port
        assert (root / "data" / "PG_VERSION").read_text().strip() == "15"
        assert (root / f".s.PGSQL.{port}").exists()  # unix socket in our private dir
        with pg.connect() as conn:
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
    assert not root.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                        connect_timeout=2)


def test_missing_postgresql_fails_unless_explicitly_skipped(monkeypatch):
    from tests import conftest_pg  # here, not at the top: pytest_plugins rewrites it first

    monkeypatch.delenv(conftest_pg.SKIP_ENV, raising=False)
    with pytest.raises(pytest.fail.Exception, match="EDI_TEST_SKIP_PG=1"):
        conftest_pg._pg_unavailable("absent")
    monkeypatch.setenv(conftest_pg.SKIP_ENV, "1")
    with pytest.raises(pytest.skip.Exception):
        conftest_pg._pg_unavailable("absent")
