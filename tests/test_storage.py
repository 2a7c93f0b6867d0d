"""Migrations on a real SQLite file and on the real PostgreSQL server; data functions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.orm import Session

from bot.conversations import (
    Located,
    add_message,
    find_or_create,
    find_or_create_sync,
    history,
    insert_messages,
    locate_sync,
    set_language,
    touch_conversation,
)
from bot.errors import StorageUnavailable
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

    # The router's hot path: plain statements on a database thread, in the same tables.
    bot = {"direction": "out", "author": "bot", "language": "de"}

    def replies(session: Session) -> tuple[list[int], str | None]:
        _client, open_conversation, _new = find_or_create_sync(session, channel="rest", external_id="a")
        ids = insert_messages(
            session,
            open_conversation.id,
            [
                {**bot, "text": "Eins", "payload": None},
                {**bot, "text": "Zwei", "payload": {"b": [1]}},
            ],
        )
        status = touch_conversation(session, open_conversation.id)
        session.commit()
        return ids, status

    ids, status = await database.run(replies)
    assert status == "bot" and len(ids) == 2 and ids[0] < ids[1]
    assert await database.run(lambda session: touch_conversation(session, "no-such-conversation")) is None
    async with database.unit_of_work() as session:
        stored = await history(session, conversation.id)
    assert [(m.text, m.kind, m.payload, m.machine_translated) for m in stored] == [
        ("Hallo", "text", None, False),
        ("Eins", "text", None, False),
        ("Zwei", "text", {"b": [1]}, False),
    ]
    assert [m.id for m in stored][1:] == ids and all(m.created_at is not None for m in stored)
    # a missing payload is SQL NULL, not the JSON text 'null' (both read back as None)
    null_payloads = await database.run(
        lambda session: session.execute(
            text("SELECT text FROM messages WHERE payload IS NULL AND text IN ('Eins', 'Zwei')")
        ).all()
    )
    assert [tuple(row) for row in null_payloads] == [("Eins",)]

    # locate_sync: plain values for a known client; the ORM creates what is missing.
    def locate(session: Session, external_id: str) -> Located:
        located = locate_sync(session, channel="rest", external_id=external_id)
        session.commit()
        return located

    known = await database.run(locate, "a")
    assert (known.client_id, known.conversation_id, known.status, known.new) == (
        client.id,
        conversation.id,
        "bot",
        False,
    )
    fresh = await database.run(locate, "b")
    assert fresh.new and fresh.client_id != client.id and fresh.language is None

    def switch(session: Session) -> None:
        set_language(session, client.id, "uk", "explicit")
        session.execute(
            text("UPDATE conversations SET status = 'closed' WHERE id = :id"), {"id": conversation.id}
        )
        session.commit()

    await database.run(switch)
    reopened = await database.run(locate, "a")
    assert (reopened.language, reopened.language_source) == ("uk", "explicit")
    assert reopened.client_id == client.id and reopened.conversation_id != conversation.id
    assert not reopened.new

    # An outage on the hot path is the same StorageUnavailable as elsewhere, not a raw driver error.
    def broken(session: Session) -> None:
        session.execute(text("SELECT * FROM no_such_table"))

    with pytest.raises(StorageUnavailable):
        await database.run(broken)
    assert await database.ping()
    await database.dispose()
