"""Alembic migrations of the monitor's database (driven from ``monitor.store.engine``)."""
