"""Alembic environment, driven programmatically by ``monitor.store.engine``.

``monitor.store.engine.alembic_config()`` passes an open connection in
``config.attributes["connection"]``; when run by the ``alembic`` command line instead, the URL
comes from ``sqlalchemy.url`` or, failing that, ``MONITOR_DATABASE_URL``.

Later migrations only add files to ``versions/``: every table belongs to
``monitor.store.models.Base.metadata``, so autogenerate sees all of them.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from monitor.store.models import Base

#: An arbitrary constant: the Postgres advisory lock held while migrating, so two hosts
#: running ``db upgrade`` at once take turns instead of racing.
MIGRATION_LOCK_ID = 0x4C434D01

config = context.config
target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return

    from monitor.config import get_settings
    from monitor.store.engine import make_engine

    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "offline (--sql) migrations are not supported; run `longcat-monitor db upgrade`"
    )
run_migrations_online()
