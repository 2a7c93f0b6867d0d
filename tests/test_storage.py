"""Migrations on a real SQLite file and on the real PostgreSQL server; data functions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text

from bot.conversations import add_message, find_or_create, history
from bot.storage.database import Database, alembic_config
from tests.auxil.servers import postgres_admin_url

TABLES = {"clients", "channel_identities", "conversations", "messages", "translations", "alembic_version"}


def test_sqlite_migrations_up_and_down(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    Database(url).upgrade()
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    command.downgrade(alembic_config(url), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL server, dropped afterwards."""
    admin = create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    name = f"lotse_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield postgres_admin_url().rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.mark.postgres
def test_postgresql_migrations_up_and_down(postgres_url: str) -> None:
    Database(postgres_url).upgrade()
    engine = create_engine(postgres_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    command.downgrade(alembic_config(postgres_url), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


@pytest.mark.postgres
async def test_conversation_data_functions_on_postgresql(postgres_url: str) -> None:
    database = Database(postgres_url)
    database.upgrade()
    await _exercise(database)


async def test_conversation_data_functions_on_sqlite(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'c.db'}")
    database.upgrade()
    await _exercise(database)


async def _exercise(database: Database) -> None:
    async with database.unit_of_work() as session:
        client, conversation, new = await find_or_create(session, channel="rest", external_id="a")
        assert new
        add_message(
            session, conversation=conversation, direction="in", author="client", text="Hallo", language="de"
        )
        await session.commit()
    async with database.unit_of_work() as session:
        again, same, new = await find_or_create(session, channel="rest", external_id="a")
        assert not new and again.id == client.id and same.id == conversation.id
        other, _, new_other = await find_or_create(session, channel="telegram", external_id="a")
        assert new_other and other.id != client.id
        messages = await history(session, conversation.id)
        assert [m.text for m in messages] == ["Hallo"]
    assert await database.ping()
    await database.dispose()
