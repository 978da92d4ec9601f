"""Opening the registry database: the engine, SQLite pragmas, and migrations.

SQLite gets WAL, foreign keys and a busy timeout on every connection, and
transactions that write start with ``BEGIN IMMEDIATE`` so concurrent writers
queue on the database lock instead of failing halfway. PostgreSQL takes an
advisory lock while migrating, so two processes opening a new database at once
do not both create the tables.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from llmship.errors import RegistryUnavailableError, SpecError

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
#: The newest migration in ``migrations/versions``; a test keeps the two in step.
HEAD_REVISION = "0007"
VERSION_TABLE = "alembic_version"
BUSY_TIMEOUT_S = 10.0
WRITE = "llmship_write"
"""Connection execution option: the transaction will write (SQLite: BEGIN IMMEDIATE)."""

NETWORK_TIMEOUT_S = 5
"""PostgreSQL: connecting, and data the server has not acknowledged, give up after this
long; an idle connection to a server that is gone is found by keepalives within about
twice as long. A registry cut off by the network then fails fast (the gateway logs it
and routes on, the controller stands by) instead of waiting for TCP's own minutes."""
PG_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": NETWORK_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": NETWORK_TIMEOUT_S,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": NETWORK_TIMEOUT_S * 1000,
}
"""libpq options every PostgreSQL connection gets, unless the URL's query sets them."""

_PG_MIGRATION_LOCK = 0x6C6C6D73  # "llms": pg_advisory_xact_lock key for migrations


def parse_url(url: str) -> URL:
    """Parse a SQLAlchemy URL, or say what one looks like."""
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise SpecError(
            f"{url!r} is not a database URL: use sqlite:///PATH or "
            "postgresql+psycopg://USER:PASSWORD@HOST/DB (LLMSHIP_DATABASE_URL)"
        ) from exc


def safe_url(url: URL) -> str:
    """The URL as text with any password hidden."""
    return url.render_as_string(hide_password=True)


def create_registry_engine(url: URL) -> Engine:
    """An engine for ``url``; SQLite gets its parent directory and pragmas, PostgreSQL
    network timeouts (:data:`PG_CONNECT_ARGS`)."""
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RegistryUnavailableError(
                    f"cannot open the registry at {safe_url(url)}: cannot create the "
                    f"directory {folder} ({exc.strerror or exc})"
                ) from exc
        connect_args["timeout"] = BUSY_TIMEOUT_S
    elif url.get_backend_name() == "postgresql":
        connect_args = {k: v for k, v in PG_CONNECT_ARGS.items() if k not in url.query}
    try:
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=False)
    except NoSuchModuleError as exc:
        raise SpecError(
            f"{safe_url(url)}: no database driver for {url.drivername!r}; use sqlite:/// "
            "or postgresql+psycopg://"
        ) from exc
    except ModuleNotFoundError as exc:
        raise SpecError(
            f"{safe_url(url)}: the database driver is not installed ({exc.name})"
        ) from exc
    if engine.dialect.name == "sqlite":
        _sqlite_events(engine)
    return engine


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def current_revision(conn: Connection) -> str | None:
    """The schema revision stamped in the database (None when empty or unclear).

    Reads Alembic's ``alembic_version`` table directly: importing Alembic costs
    more than the rest of opening the registry, and is only needed to migrate.
    """
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    revisions = list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    return revisions[0] if len(revisions) == 1 else None


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; quick when it already is."""
    with engine.connect() as conn:
        revision = current_revision(conn)
        conn.rollback()
    if revision == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
            config.attributes["connection"] = conn
            logger.info("migrating the registry schema from %s to %s", revision, HEAD_REVISION)
            try:
                command.upgrade(config, "head")
            except CommandError as exc:
                raise RegistryUnavailableError(
                    f"the registry schema is at revision {revision!r}, which this llmship "
                    f"does not know (newest: {HEAD_REVISION}); upgrade llmship ({exc})"
                ) from exc
