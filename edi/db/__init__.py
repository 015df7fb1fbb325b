"""Database access: one engine per process, schema created or upgraded on first use.

SQLite by default (WAL mode so that several worker processes share one file), PostgreSQL
by URL (psycopg 3 driver). The same models and queries run on both.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event, inspect, make_url, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine

from edi.db import models  # noqa: F401  (registers the tables)

_engines: dict[str, Engine] = {}


def _normalise(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://"):]
    return url


def engine_for(url: str) -> Engine:
    """Return the process's engine for `url`, creating the schema if needed."""
    url = _normalise(url)
    if url in _engines:
        return _engines[url]
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(eng, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        eng = create_engine(url, pool_pre_ping=True)
    SQLModel.metadata.create_all(eng)
    _add_missing_columns(eng)
    _engines[url] = eng
    return eng


# Filled from existing rows when a column is added to an existing table (upgrade). `{true}` and
# `{number}` (a condition that the text column holds a plain decimal number) are per dialect.
BACKFILL = {
    ("invoice", "amount_ttc"): "UPDATE invoice SET amount_ttc = CAST(total_ttc AS NUMERIC(18, 2)) "
                               "WHERE accepted = {true} AND total_ttc <> '' AND {number}",
}
_DIALECT_WORDS = {
    "sqlite": dict(true="1", number="CAST(total_ttc AS REAL) BETWEEN -1e15 AND 1e15"),
    "postgresql": dict(true="TRUE", number="total_ttc ~ '^-?[0-9]{1,15}([.][0-9]+)?$'"),
}


def _add_missing_columns(eng: Engine) -> None:
    """Schema upgrade for additive changes: a column the models have and the table lacks is
    added (nullable, or with its scalar default), filled from the existing rows when `BACKFILL`
    says how, and indexed as the model says. Renames and type changes are not handled."""
    inspector = inspect(eng)
    with eng.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            added = set()
            for column in table.columns:
                if column.name in present:
                    continue
                added.add(column.name)
                ddl = f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.type.compile(eng.dialect)}"
                default = column.default.arg if column.default is not None and column.default.is_scalar else None
                if default is not None:
                    literal = ("TRUE" if default else "FALSE") if isinstance(default, bool) else (
                        str(default) if isinstance(default, (int, float)) else "'" + str(default).replace("'", "''") + "'")
                    ddl += f" DEFAULT {literal}"
                conn.execute(text(ddl))
                if (table.name, column.name) in BACKFILL:
                    conn.execute(text(BACKFILL[(table.name, column.name)].format(**_DIALECT_WORDS[eng.dialect.name])))
            for index in table.indexes:
                if added & {c.name for c in index.columns}:
                    index.create(conn, checkfirst=True)


def dispose_all() -> None:
    """Drop pooled connections (after a fork, or at the end of tests)."""
    for eng in _engines.values():
        eng.dispose()
    _engines.clear()


def session(url: str) -> Session:
    return Session(engine_for(url), expire_on_commit=False)
