"""The dead-letter store on real SQLite files: every column kept, upserts, filters, durability."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests import vectors as v
from tuya_events.config import load_settings
from tuya_events.deadletter import (
    DeadLetterRecord,
    DeadLetterStore,
    DeadLetterStoreError,
    RecordFilter,
    parse_time,
)
from tuya_events.deadletter.record import COLUMNS
from tuya_events.deadletter.schema import SCHEMA_VERSION, TABLE
from tuya_events.delivery import Delivery, Failure
from tuya_events.tuya.auth import pulsar_password
from tuya_events.tuya.codec import TuyaCodec
from tuya_events.tuya.crypto import aes_key

ENVELOPE = json.dumps({"data": v.ECB_DATA, "protocol": 4, "pv": "2.0", "t": 1622449865300})
BODY = ENVELOPE.encode()


def delivery(message_id: str = "m-1", **overrides: object) -> Delivery:
    fields: dict = {
        "body": BODY,
        "properties": {"em": "aes_ecb", "qos": "1"},
        "message_id": message_id,
        "topic": f"persistent://{v.ACCESS_ID}/out/event-partition-4",
        "partition": 4,
        "publish_time_ms": 1622449865300,
        "redelivery_count": 2,
        "key": "devIddevIddevIddevIddevId",
    }
    fields.update(overrides)
    return Delivery(**fields)


def failure(**overrides: object) -> Failure:
    fields: dict = {
        "stage": "handler",
        "reason": "http_500",
        "detail": "webhook answered 500",
        "handler": "webhook",
        "attempts": 5,
        "first_failure": 1_700_000_000.25,
        "last_failure": 1_700_000_100.5,
    }
    fields.update(overrides)
    return Failure(**fields)


def raw_rows(path: Path) -> list[tuple]:
    """Rows read with a separate connection: what is really in the file, not what we cached."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE}").fetchall()
    finally:
        connection.close()


def file_bytes(path: Path) -> bytes:
    """The database and its WAL, as they lie on disk."""
    return b"".join(
        candidate.read_bytes()
        for candidate in (path, path.with_name(path.name + "-wal"))
        if candidate.exists()
    )


# -- round trip ---------------------------------------------------------------------------------


def test_round_trip_keeps_every_column_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite3"
    body = bytes(range(256)) * 3  # every byte value, not valid UTF-8: stored as a BLOB
    sent = delivery(body=body, properties={"em": "aes_gcm", "note": "grüße ✓"}, key=None)
    problem = failure(stage="decode", reason="bad_padding", handler=None, detail="bad\npadding")
    with DeadLetterStore(path, store_plaintext=True) as store:
        record_id = store.put(sent, problem, device_id="dev-7", plaintext=b'{"devId":"dev-7"}')

    with DeadLetterStore(path) as store:
        record = store.get(record_id)
    assert record == DeadLetterRecord(
        id=record_id,
        message_id="m-1",
        topic=sent.topic,
        partition=4,
        publish_time_ms=1622449865300,
        redelivery_count=2,
        key=None,
        properties={"em": "aes_gcm", "note": "grüße ✓"},
        body=body,
        stage="decode",
        handler=None,
        reason="bad_padding",
        message="bad\npadding",
        attempts=5,
        first_failure=1_700_000_000.25,
        last_failure=1_700_000_100.5,
        device_id="dev-7",
        plaintext=b'{"devId":"dev-7"}',
    )
    assert isinstance(record.body, bytes)


def test_to_delivery_is_the_message_as_received_marked_for_replay(tmp_path: Path) -> None:
    sent = delivery(handle=object())
    with DeadLetterStore(tmp_path / "dlq.sqlite3") as store:
        record = store.get(store.put(sent, failure()))
    assert record is not None
    replayed = record.to_delivery()
    assert replayed.body == sent.body and replayed.properties == sent.properties
    assert (replayed.message_id, replayed.topic, replayed.partition, replayed.key) == (
        sent.message_id,
        sent.topic,
        sent.partition,
        sent.key,
    )
    assert (replayed.publish_time_ms, replayed.redelivery_count) == (1622449865300, 2)
    assert replayed.dead_letter_id == record.id and replayed.handle is None


def test_as_dict_is_json_with_body_only_on_request(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dlq.sqlite3", store_plaintext=True) as store:
        record = store.get(store.put(delivery(), failure(), plaintext=b"{}"))
    assert record is not None
    short = json.loads(json.dumps(record.as_dict()))
    assert "body" not in short and "plaintext" not in short
    assert short["body_size"] == len(BODY) and short["has_plaintext"] is True
    assert short["reason"] == "http_500" and short["properties"]["em"] == "aes_ecb"
    full = json.loads(json.dumps(record.as_dict(include_body=True)))
    assert base64.b64decode(full["body"]) == BODY
    assert base64.b64decode(full["plaintext"]) == b"{}"


# -- durability ---------------------------------------------------------------------------------


def test_put_is_committed_in_wal_mode_with_full_sync_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite3"
    store = DeadLetterStore(path)
    record_id = store.put(delivery(), failure())  # opened lazily
    # Another connection sees it while the store is still open: nothing waits for a close.
    assert [row[0] for row in raw_rows(path)] == [record_id]
    connection = store._connection  # the store's own connection: synchronous is per connection
    assert connection is not None
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert not connection.in_transaction
    store.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    from tuya_events.deadletter import DeadLetterStore
    from tuya_events.delivery import Delivery, Failure

    store = DeadLetterStore(sys.argv[1])
    record_id = store.put(
        Delivery(body=b"exactly these bytes", properties={"em": "aes_gcm"}, message_id="m-kill"),
        Failure(stage="handler", reason="timeout", detail="db too slow", handler="postgres"),
        device_id="dev-kill",
    )
    print("done", record_id, flush=True)
    time.sleep(120)
    """
)


def test_record_survives_sigkill_right_after_put_returns(tmp_path: Path) -> None:
    path = tmp_path / "state" / "dlq.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("done"), line
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    record_id = int(line.split()[1])
    # The process died with the connection open: the record is in the WAL, not checkpointed.
    assert path.with_name(path.name + "-wal").stat().st_size > 0
    with DeadLetterStore(path) as store:
        record = store.get(record_id)
        assert store.count() == 1
    assert record is not None
    assert record.body == b"exactly these bytes" and record.message_id == "m-kill"
    assert (record.reason, record.handler, record.device_id) == ("timeout", "postgres", "dev-kill")


# -- replay upsert ------------------------------------------------------------------------------


def test_replayed_record_failing_again_updates_it_and_keeps_first_failure(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dlq.sqlite3", store_plaintext=True) as store:
        first = failure(stage="decode", reason="bad_padding", handler=None, attempts=1)
        record_id = store.put(delivery(), first)
        other_id = store.put(delivery("m-2"), failure())
        original = store.get(record_id)
        assert original is not None

        again = failure(
            reason="http_400",
            detail="rejected",
            attempts=3,
            first_failure=1_800_000_000.0,
            last_failure=1_800_000_050.0,
        )
        returned = store.put(original.to_delivery(), again, device_id="dev-9", plaintext=b"{}")
        assert returned == record_id
        assert store.count() == 2
        updated = store.get(record_id)
        untouched = store.get(other_id)
    assert updated is not None and untouched is not None
    assert updated.attempts == 1 + 3
    assert updated.first_failure == original.first_failure
    assert updated.last_failure == 1_800_000_050.0
    assert (updated.stage, updated.handler, updated.reason, updated.message) == (
        "handler",
        "webhook",
        "http_400",
        "rejected",
    )
    assert updated.device_id == "dev-9" and updated.plaintext == b"{}"
    assert updated.body == original.body and updated.message_id == original.message_id
    assert untouched.reason == "http_500" and untouched.attempts == 5


def test_replay_of_a_record_deleted_meanwhile_writes_a_new_one(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dlq.sqlite3") as store:
        record = store.get(store.put(delivery(), failure()))
        assert record is not None and store.delete(record.id) is True
        new_id = store.put(record.to_delivery(), failure(reason="timeout"))
        assert new_id != record.id
        assert [(r.id, r.reason) for r in store.list()] == [(new_id, "timeout")]


# -- filters, listing, purge --------------------------------------------------------------------


@pytest.fixture
def populated(tmp_path: Path) -> Iterator[DeadLetterStore]:
    """Five records with distinct reasons, stages, handlers, devices and failure times."""
    store = DeadLetterStore(tmp_path / "dlq.sqlite3")
    specs = [
        ("decode", "bad_padding", None, None, 1000.0),
        ("decode", "bad_json", None, None, 2000.0),
        ("handler", "http_500", "webhook", "dev-a", 3000.0),
        ("handler", "timeout", "postgres", "dev-a", 4000.0),
        ("handler", "http_500", "webhook", "dev-b", 5000.0),
    ]
    for index, (stage, reason, handler, device, at) in enumerate(specs, start=1):
        store.put(
            delivery(f"m-{index}"),
            failure(stage=stage, reason=reason, handler=handler, first_failure=at, last_failure=at),
            device_id=device,
        )
    yield store
    store.close()


def ids_of(store: DeadLetterStore, filters: RecordFilter | None) -> list[int]:
    listed = [record.id for record in store.list(filters)]
    assert [record.id for record in store.iter(filters)] == listed
    assert store.count(filters) == len(listed)
    return listed


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (None, [1, 2, 3, 4, 5]),
        (RecordFilter(), [1, 2, 3, 4, 5]),
        (RecordFilter(reason="http_500"), [3, 5]),
        (RecordFilter(stage="decode"), [1, 2]),
        (RecordFilter(handler="postgres"), [4]),
        (RecordFilter(device_id="dev-a"), [3, 4]),
        (RecordFilter(ids=[5, 2, 99]), [2, 5]),
        (RecordFilter(ids=[]), []),
        (RecordFilter(since=2000.0), [2, 3, 4, 5]),
        (RecordFilter(until=2000.0), [1]),
        (RecordFilter(since=2000.0, until=4000.0), [2, 3]),
        (RecordFilter(reason="http_500", device_id="dev-a"), [3]),
        (RecordFilter(reason="http_500", stage="decode"), []),
        (RecordFilter(reason="x' OR '1'='1"), []),
    ],
)
def test_filters(populated: DeadLetterStore, filters: RecordFilter | None, expected: list) -> None:
    assert ids_of(populated, filters) == expected


def test_list_is_oldest_first_and_limited(populated: DeadLetterStore) -> None:
    assert [r.id for r in populated.list(limit=2)] == [1, 2]
    assert [r.id for r in populated.list(RecordFilter(stage="handler"), limit=2)] == [3, 4]


def test_iter_streams_in_batches_while_records_are_deleted(populated: DeadLetterStore) -> None:
    seen = []
    for record in populated.iter(batch_size=2):
        seen.append(record.id)
        assert populated.delete(record.id)  # what a replay does: the store is not locked
    assert seen == [1, 2, 3, 4, 5]
    assert populated.count() == 0


def test_delete_and_purge(populated: DeadLetterStore) -> None:
    assert populated.delete(1) is True
    assert populated.delete(1) is False
    assert populated.purge(RecordFilter(reason="http_500")) == 2
    assert ids_of(populated, None) == [2, 4]
    assert populated.purge(RecordFilter(reason="nothing")) == 0
    assert populated.purge() == 2
    assert populated.count() == 0


def test_record_filter_is_empty() -> None:
    assert RecordFilter().is_empty()
    assert not RecordFilter(ids=[]).is_empty()
    assert not RecordFilter(since=0.0).is_empty()


def test_parse_time_relative_and_iso() -> None:
    now = 1_700_000_000.0
    assert parse_time("2h", now=now) == now - 7200
    assert parse_time("30m", now=now) == now - 1800
    assert parse_time("1d", now=now) == now - 86400
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000.0
    assert parse_time("2023-11-14T23:13:20+01:00") == 1_700_000_000.0
    naive = datetime(2024, 5, 1, 12, 0)  # no offset: local time
    assert parse_time("2024-05-01T12:00") == naive.timestamp()
    assert parse_time("2024-05-01") == datetime(2024, 5, 1).timestamp()
    assert datetime.fromtimestamp(parse_time("1w", now=now), timezone.utc).day == 7
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


# -- schema -------------------------------------------------------------------------------------


def test_migration_from_an_empty_file_sets_user_version(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite3"
    path.write_bytes(b"")
    with DeadLetterStore(path) as store:
        store.put(delivery(), failure())
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        columns = [row[1] for row in connection.execute(f"PRAGMA table_info({TABLE})")]
        indexes = {row[1] for row in connection.execute(f"PRAGMA index_list({TABLE})")}
    finally:
        connection.close()
    assert columns == list(COLUMNS)
    assert {f"{TABLE}_{c}" for c in ("reason", "stage", "last_failure", "message_id")} <= indexes
    with DeadLetterStore(path) as store:  # opening a current file again migrates nothing
        assert store.open() is store and store.count() == 1


def test_parent_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "dlq.sqlite3"
    with DeadLetterStore(path) as store:
        assert store.count() == 0
    assert path.is_file()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite3"
    DeadLetterStore(path).open().close()
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(DeadLetterStoreError, match="newer than this program"):
        DeadLetterStore(path).open()


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite3"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(DeadLetterStoreError, match=r"dlq\.sqlite3"):
        DeadLetterStore(path).open()
    assert path.read_bytes() == b"this is not SQLite" * 100


def test_another_applications_database_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE accounts (id INTEGER)")
    connection.commit()
    connection.close()
    with pytest.raises(DeadLetterStoreError, match="not a dead-letter store"):
        DeadLetterStore(path).open()
    connection = sqlite3.connect(path)
    tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master")]
    connection.close()
    assert tables == ["accounts"]


# -- what is never stored -----------------------------------------------------------------------


def test_store_plaintext_false_never_keeps_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "dlq.sqlite3"
    marker = b"PLAINTEXT-MARKER-d41d8cd98f00"
    with DeadLetterStore(path, store_plaintext=False) as store:
        record_id = store.put(delivery(), failure(), device_id="dev", plaintext=marker)
        record = store.get(record_id)
        assert record is not None and record.plaintext is None
        store.put(record.to_delivery(), failure(), plaintext=marker)  # the update path too
        assert store.get(record_id).plaintext is None  # type: ignore[union-attr]
        assert marker not in file_bytes(path)
    plaintext_index = COLUMNS.index("plaintext")
    assert [row[plaintext_index] for row in raw_rows(path)] == [None]


def test_no_secret_in_any_column_of_a_record(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    store_path = tmp_path / "dlq.sqlite3"
    config.write_text(
        f"tuya:\n  access_id: {v.ACCESS_ID}\n  access_secret: {v.ACCESS_SECRET}\n  region: eu\n"
        f"dead_letter:\n  path: {store_path}\n  store_plaintext: true\n"
    )
    settings = load_settings(config)
    secret = settings.tuya.access_secret.get_secret_value()
    codec = TuyaCodec(secret)
    _, plaintext = codec.decrypt(BODY, {"em": "aes_ecb"})
    assert plaintext == v.PLAINTEXT.encode()  # a real decryption with the configured secret

    settings_store = settings.dead_letter
    with DeadLetterStore(settings_store.path, settings_store.store_plaintext) as store:
        record_id = store.put(
            delivery(),
            failure(detail="handler 'webhook' failed: 500"),
            device_id="devIddevIddevIddevIddevId",
            plaintext=plaintext,
        )
        record = store.get(record_id)
    assert record is not None and record.plaintext == plaintext

    forbidden = [
        secret.encode(),
        aes_key(secret),
        pulsar_password(v.ACCESS_ID, secret).encode(),
    ]
    (row,) = raw_rows(store_path)
    for column, value in zip(COLUMNS, row, strict=True):
        data = value if isinstance(value, bytes) else str(value).encode()
        for needle in forbidden:
            assert needle not in data, f"column {column} holds secret material"
    rendered = json.dumps(record.as_dict(include_body=True)).encode()
    everything = file_bytes(store_path) + rendered
    for needle in forbidden:
        assert needle not in everything


# -- threads ------------------------------------------------------------------------------------


def test_concurrent_puts_through_asyncio_to_thread(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "dlq.sqlite3")

    async def put_many() -> list[int]:
        return await asyncio.gather(
            *(
                asyncio.to_thread(store.put, delivery(f"m-{index}"), failure())
                for index in range(200)
            )
        )

    try:
        started = time.monotonic()
        ids = asyncio.run(put_many())
        assert time.monotonic() - started < 60
        assert len(set(ids)) == 200 and store.count() == 200
        assert sorted(r.message_id for r in store.iter()) == sorted(f"m-{i}" for i in range(200))
    finally:
        store.close()


def test_close_then_use_reopens_lazily(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "dlq.sqlite3")
    store.open()
    store.open()
    store.close()
    store.close()
    assert store.put(delivery(), failure()) == 1
    assert store.count() == 1
    store.close()


# -- permissions: the store may hold device data -------------------------------------------------

UNDER_UMASK_022 = textwrap.dedent(
    """
    import json, os, sqlite3, stat, sys
    from pathlib import Path
    from tuya_events.deadletter import DeadLetterStore
    from tuya_events.delivery import Delivery, Failure

    os.umask(0o022)  # outside systemd: what a login shell or a container usually has
    top = Path(sys.argv[1])
    path = top / "state" / "tuya" / "dlq.sqlite3"
    modes = {}

    def note():
        for found in sorted(top.rglob("*")):
            modes[str(found.relative_to(top))] = stat.S_IMODE(found.stat().st_mode)

    (top / "control").touch()  # what the umask alone gives a new file
    with DeadLetterStore(path, store_plaintext=True) as store:
        store.put(
            Delivery(body=b"cipher", properties={}, message_id="m-1"),
            Failure(stage="handler", reason="timeout", detail="slow", handler="webhook"),
            device_id="dev-1",
            plaintext=b'{"devId": "dev-1", "status": [{"code": "door", "value": true}]}',
        )
        note()  # -wal and -shm exist while it is open
    # A rollback journal, as any other SQLite client may leave next to it.
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = PERSIST")
    connection.execute("DELETE FROM dead_letters")
    connection.close()
    note()
    print(json.dumps(modes))
    """
)


def test_the_store_and_its_side_files_are_private_under_a_umask_of_022(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", UNDER_UMASK_022, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    modes = json.loads(result.stdout)
    assert modes.pop("control") == 0o644  # the umask really was 022
    store = "state/tuya/dlq.sqlite3"
    assert {name: oct(mode) for name, mode in modes.items()} == {
        "state": "0o700",
        "state/tuya": "0o700",
        store: "0o600",
        f"{store}-wal": "0o600",
        f"{store}-shm": "0o600",
        f"{store}-journal": "0o600",
    }


def test_an_existing_directory_keeps_its_mode(tmp_path: Path) -> None:
    """Only what the store creates is made private: a directory the operator made is theirs."""
    tmp_path.chmod(0o755)
    with DeadLetterStore(tmp_path / "dlq.sqlite3") as store:
        store.count()
    assert tmp_path.stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "dlq.sqlite3").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("field", ["partition", "publish_time_ms", "redelivery_count"])
@pytest.mark.parametrize("value", [2**63, 2**70, -(2**63) - 1])
def test_a_number_beyond_sqlite_integers_is_clamped_not_a_failed_write(
    tmp_path: Path, field: str, value: int
) -> None:
    """A broker's garbage time (beyond 64 bits) must not make the write that keeps the message
    fail: the record is written, the number clamped to SQLite's range."""
    with DeadLetterStore(tmp_path / "dlq.sqlite3") as store:
        record_id = store.put(delivery(**{field: value}), failure(attempts=2**64))
        record = store.get(record_id)
    assert record is not None
    assert getattr(record, field) == (2**63 - 1 if value > 0 else -(2**63))
    assert record.attempts == 2**63 - 1 and record.body == BODY
