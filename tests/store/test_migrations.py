"""Migrations on empty SQLite and Postgres databases: up to head, and back down to nothing."""

from __future__ import annotations

from sqlalchemy import inspect

from monitor.store.engine import (
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    revisions_between,
    upgrade,
)


def test_upgrade_to_head_and_downgrade_to_base(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        assert current_revision(engine) is None
        assert check_schema(engine) is not None

        before, after = upgrade(engine)
        assert (before, after) == (None, head_revision())
        assert check_schema(engine) is None
        tables = set(inspect(engine).get_table_names())
        assert "api_calls" in tables

        assert upgrade(engine) == (after, after)  # a second run does nothing

        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()


def test_0001_creates_api_calls_with_its_indexes(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        upgrade(engine, "0001_api_calls")
        inspector = inspect(engine)
        columns = {c["name"] for c in inspector.get_columns("api_calls")}
        assert {"id", "event_id", "started_at", "key_id", "labels", "host", "source"} <= columns
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("api_calls")}
        assert indexes["ix_api_calls_started_at"] == ["started_at"]
        assert indexes["ix_api_calls_key_id_started_at"] == ["key_id", "started_at"]
        uniques = [u["column_names"] for u in inspector.get_unique_constraints("api_calls")]
        assert ["event_id"] in uniques
        downgrade(engine, "base")
        assert "api_calls" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_revisions_between_lists_what_an_upgrade_applied() -> None:
    head = head_revision()
    applied = revisions_between(None, head)
    assert applied[0] == "0001_api_calls"
    assert applied[-1] == head
    assert revisions_between(head, head) == []
