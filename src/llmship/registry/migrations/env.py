"""Alembic environment of the llmship registry.

llmship runs migrations itself (``Registry.open`` calls ``upgrade head``) and
hands over an open connection in ``config.attributes["connection"]``; no
``alembic.ini`` is needed. Run by hand (``alembic -x url=... upgrade head`` with
a config whose ``script_location`` is this folder), the URL comes from ``-x url``
or ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from llmship.registry.tables import Base

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("give the database URL with `-x url=...` or sqlalchemy.url")
    return url


def run() -> None:
    """Run the migrations on the given connection, or on a URL when run by hand."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
    elif context.is_offline_mode():
        context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        engine = create_engine(_url())
        try:
            with engine.begin() as conn:
                _configure_and_run(conn)
        finally:
            engine.dispose()


run()
