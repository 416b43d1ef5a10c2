"""A dead letter as ``dlq list``/``show`` print it and ``dlq replay`` sends it again (issue 15):
every field, with and without the body, with and without a plaintext, and rows as SQLite returns
them."""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import replace

import pytest

from tuya_events.deadletter.record import COLUMNS, DeadLetterRecord

RECORD = DeadLetterRecord(
    id=7,
    message_id="m-7",
    topic="persistent://id/out/event-partition-1",
    partition=1,
    publish_time_ms=1622449865300,
    redelivery_count=3,
    key="dev-1",
    properties={"em": "aes_gcm"},
    body=b'{"data":"x"}',
    stage="handler",
    handler="webhook",
    reason="http_500",
    message="webhook answered 500",
    attempts=4,
    first_failure=10.5,
    last_failure=12.5,
    device_id="dev-1",
    plaintext=b'{"devId":"dev-1"}',
    seen=2,
)
METADATA = {
    "id": 7,
    "message_id": "m-7",
    "topic": "persistent://id/out/event-partition-1",
    "partition": 1,
    "publish_time_ms": 1622449865300,
    "redelivery_count": 3,
    "key": "dev-1",
    "properties": {"em": "aes_gcm"},
    "stage": "handler",
    "handler": "webhook",
    "reason": "http_500",
    "message": "webhook answered 500",
    "attempts": 4,
    "first_failure": 10.5,
    "last_failure": 12.5,
    "device_id": "dev-1",
    "seen": 2,
}


def test_as_dict_without_the_body_gives_its_size_and_whether_a_plaintext_is_kept() -> None:
    assert RECORD.as_dict() == {**METADATA, "body_size": 12, "has_plaintext": True}
    assert replace(RECORD, plaintext=None).as_dict()["has_plaintext"] is False


def test_as_dict_with_the_body_gives_both_in_base64() -> None:
    full = RECORD.as_dict(include_body=True)
    assert full == {
        **METADATA,
        "body": base64.b64encode(b'{"data":"x"}').decode(),
        "plaintext": base64.b64encode(b'{"devId":"dev-1"}').decode(),
    }
    json.dumps(full)
    assert replace(RECORD, plaintext=None).as_dict(include_body=True)["plaintext"] is None


def test_to_delivery_is_the_message_as_received_marked_with_its_record() -> None:
    delivery = RECORD.to_delivery()
    assert (delivery.body, delivery.properties, delivery.message_id) == (
        b'{"data":"x"}',
        {"em": "aes_gcm"},
        "m-7",
    )
    assert (delivery.topic, delivery.partition, delivery.publish_time_ms) == (
        "persistent://id/out/event-partition-1",
        1,
        1622449865300,
    )
    assert (delivery.redelivery_count, delivery.key) == (3, "dev-1")
    assert delivery.dead_letter_id == 7 and delivery.handle is None
    delivery.properties["em"] = "changed"
    assert RECORD.properties == {"em": "aes_gcm"}  # the record is not changed through it


def _row_from_sqlite(record: DeadLetterRecord) -> tuple:
    values = {name: getattr(record, name) for name in COLUMNS}
    values["properties"] = json.dumps(values["properties"])
    with sqlite3.connect(":memory:") as db:
        db.execute(f"CREATE TABLE t ({', '.join(COLUMNS)})")
        db.execute(f"INSERT INTO t VALUES ({', '.join('?' * len(COLUMNS))})", list(values.values()))
        db.text_factory = str
        return db.execute(f"SELECT {', '.join(COLUMNS)} FROM t").fetchone()


@pytest.mark.parametrize("plaintext", [b'{"devId":"dev-1"}', None], ids=["plaintext", "none"])
def test_from_row_reads_a_row_back_into_the_same_record(plaintext: bytes | None) -> None:
    record = replace(RECORD, plaintext=plaintext)
    row = list(_row_from_sqlite(record))
    # Drivers may hand BLOBs back as memoryview: the record holds bytes either way.
    row[COLUMNS.index("body")] = memoryview(row[COLUMNS.index("body")])
    if plaintext is not None:
        row[COLUMNS.index("plaintext")] = memoryview(row[COLUMNS.index("plaintext")])
    back = DeadLetterRecord.from_row(row)
    assert back == record
    assert type(back.body) is bytes
    assert plaintext is None or type(back.plaintext) is bytes


def test_from_row_refuses_a_row_of_the_wrong_length() -> None:
    row = _row_from_sqlite(RECORD)
    with pytest.raises(ValueError):
        DeadLetterRecord.from_row(row[:-1])


def test_the_columns_are_the_fields_in_order() -> None:
    assert COLUMNS[:3] == ("id", "message_id", "topic")
    assert COLUMNS[-2:] == ("plaintext", "seen")
    assert len(COLUMNS) == 19
