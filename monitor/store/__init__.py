"""Storage: SQLAlchemy models, engines and migrations, and the queries that write and read."""

from monitor.store.calls import insert_calls
from monitor.store.engine import (
    DatabaseUnavailableError,
    SchemaNotCurrentError,
    StoreError,
    check_schema,
    current_revision,
    describe_url,
    head_revision,
    make_engine,
    upgrade,
    upgrade_sqlite_on_first_use,
)

__all__ = [
    "DatabaseUnavailableError",
    "SchemaNotCurrentError",
    "StoreError",
    "check_schema",
    "current_revision",
    "describe_url",
    "head_revision",
    "insert_calls",
    "make_engine",
    "upgrade",
    "upgrade_sqlite_on_first_use",
]
