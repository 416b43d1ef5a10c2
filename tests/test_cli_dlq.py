"""``tuya-events dlq`` as a user runs it: the installed command on a real store file."""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from tests import vectors as v
from tests.support.cli import run_cli
from tests.support.paths import TUYA_EVENTS
from tuya_events.deadletter import DeadLetterStore, RecordFilter
from tuya_events.deadletter.render import local_time
from tuya_events.delivery import Delivery, Failure
from tuya_events.tuya.auth import pulsar_password
from tuya_events.tuya.crypto import aes_key

BODY = json.dumps({"data": v.ECB_DATA, "protocol": 4, "t": 1622449865300}).encode()
SECRETS = (
    v.ACCESS_SECRET,
    aes_key(v.ACCESS_SECRET).decode(),
    pulsar_password(v.ACCESS_ID, v.ACCESS_SECRET),
)
# (stage, reason, handler, device, last failure, message, plaintext)
RECORDS = [
    ("decode", "bad_padding", None, None, 1_700_000_000.0, "PKCS#7 padding is wrong", None),
    ("handler", "http_500", "webhook", "dev-a", 1_700_003_600.0, "webhook said 500\x1b[2J", b"{}"),
    ("handler", "timeout", "postgres", "dev-b", 1_700_007_200.0, "took 30s", None),
]


def tuya_events(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``run_cli`` that also fails on a traceback or on a secret in what it printed."""
    result = run_cli(*args, stdin=stdin, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    return result


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "dlq.sqlite3"
    with DeadLetterStore(path, store_plaintext=True) as store:
        for index, (stage, reason, handler, device, at, message, plain) in enumerate(RECORDS):
            store.put(
                Delivery(
                    body=BODY,
                    properties={"em": "aes_ecb", "qos": "1"},
                    message_id=f"m-{index + 1}",
                    topic="persistent://x/out/event-partition-2",
                    partition=2,
                    publish_time_ms=1622449865300,
                ),
                Failure(stage, reason, message, handler, 2, at - 60, at),
                device_id=device,
                plaintext=plain,
            )
    return path


@pytest.fixture
def config_path(tmp_path: Path, store_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"tuya:\n  access_id: {v.ACCESS_ID}\n  access_secret: {v.ACCESS_SECRET}\n  region: eu\n"
        f"dead_letter:\n  path: {store_path}\n"
    )
    return path


def remaining(path: Path) -> list[str]:
    with DeadLetterStore(path) as store:
        return [record.reason for record in store.list()]


# -- list ---------------------------------------------------------------------------------------


def test_list_prints_an_aligned_table_with_local_times(store_path: Path) -> None:
    result = tuya_events("dlq", "list", "--store", str(store_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    header = lines[0]
    assert header == (
        "ID  LAST FAILURE               STAGE    HANDLER   REASON       ATTEMPTS  DEVICE  MESSAGE"
    )
    reason_column = header.index("REASON")
    device_column = header.index("DEVICE")
    for line, (_, reason, _, device, at, _, _) in zip(lines[1:], RECORDS, strict=True):
        assert line[reason_column:].startswith(reason)
        assert line[device_column:].startswith(device or "-")
        assert local_time(at) in line
    assert "\x1b" not in result.stdout and "webhook said 500\\x1b[2J" in lines[2]


def test_list_filters_and_limit(store_path: Path) -> None:
    store = str(store_path)

    def listed(*options: str) -> list[str]:
        result = tuya_events("dlq", "list", "--store", store, "--json", *options)
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["reason"] for line in result.stdout.splitlines()]

    assert listed() == ["bad_padding", "http_500", "timeout"]
    assert listed("--stage", "handler") == ["http_500", "timeout"]
    assert listed("--reason", "timeout") == ["timeout"]
    assert listed("--handler", "webhook") == ["http_500"]
    assert listed("--device", "dev-b") == ["timeout"]
    assert listed("--id", "1", "--id", "3") == ["bad_padding", "timeout"]
    assert listed("--since", "2023-11-14T23:00:00Z") == ["http_500", "timeout"]
    assert listed("--until", "2023-11-14T23:00:00+00:00") == ["bad_padding"]
    assert listed("--since", "1h") == []
    assert listed("--until", "1h") == ["bad_padding", "http_500", "timeout"]
    assert listed("--limit", "2") == ["bad_padding", "http_500"]

    limited = tuya_events("dlq", "list", "--store", store, "--limit", "1")
    assert limited.returncode == 0 and len(limited.stdout.splitlines()) == 2
    assert "showing 1 of 3" in limited.stderr


def test_list_json_lines_leave_the_body_out(store_path: Path) -> None:
    result = tuya_events("dlq", "--store", str(store_path), "list", "--json")
    assert result.returncode == 0, result.stderr
    first = json.loads(result.stdout.splitlines()[0])
    assert first["id"] == 1 and first["stage"] == "decode" and first["handler"] is None
    assert first["attempts"] == 2 and first["last_failure"] == 1_700_000_000.0
    assert first["properties"] == {"em": "aes_ecb", "qos": "1"}
    assert first["body_size"] == len(BODY) and "body" not in first


def test_list_with_nothing_matching_says_so(store_path: Path) -> None:
    result = tuya_events("dlq", "list", "--store", str(store_path), "--reason", "nope")
    assert result.returncode == 0 and result.stdout == ""
    assert "no dead letters match" in result.stderr


def test_store_path_from_the_configuration(config_path: Path) -> None:
    result = tuya_events("dlq", "list", "-c", str(config_path), "--json")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    assert tuya_events("dlq", "-c", str(config_path), "show", "1").returncode == 0


# -- show ---------------------------------------------------------------------------------------


def test_show_prints_every_field_body_and_stored_plaintext(store_path: Path) -> None:
    result = tuya_events("dlq", "show", "2", "--store", str(store_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (
        "m-2",
        "persistent://x/out/event-partition-2",
        "http_500",
        "webhook",
        "dev-a",
        "em = aes_ecb",
        "qos = 1",
        base64.b64encode(BODY).decode(),
        local_time(1_700_003_600.0),
        local_time(1_700_003_540.0),
        "plaintext (2 bytes):",
    ):
        assert expected in out
    assert "\x1b" not in out

    without = tuya_events("dlq", "show", "1", "--store", str(store_path))
    assert without.returncode == 0 and "plaintext" not in without.stdout


def test_show_json_has_the_body_in_base64(store_path: Path) -> None:
    result = tuya_events("dlq", "show", "2", "--json", "--store", str(store_path))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert base64.b64decode(document["body"]) == BODY
    assert base64.b64decode(document["plaintext"]) == b"{}"
    assert document["message"] == "webhook said 500\x1b[2J"
    assert document["first_failure"] == 1_700_003_540.0


def test_show_unknown_id_exits_1(store_path: Path) -> None:
    result = tuya_events("dlq", "show", "42", "--store", str(store_path))
    assert result.returncode == 1 and result.stdout == ""
    assert "no dead letter with id 42" in result.stderr


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [("list",), ("show", "1"), ("purge", "--all", "--yes")])
def test_missing_store_exits_66_without_creating_it(tmp_path: Path, action: tuple) -> None:
    missing = tmp_path / "absent" / "dlq.sqlite3"
    result = tuya_events("dlq", *action, "--store", str(missing))
    assert result.returncode == 66
    assert "no dead-letter store at" in result.stderr and str(missing) in result.stderr
    assert not missing.parent.exists()


def test_replay_with_a_missing_store_exits_66(tmp_path: Path, config_path: Path) -> None:
    missing = tmp_path / "absent.sqlite3"
    result = tuya_events("dlq", "replay", "-c", str(config_path), "--store", str(missing))
    assert result.returncode == 66 and "no dead-letter store" in result.stderr


def test_without_store_or_configuration_exits_78(tmp_path: Path) -> None:
    result = tuya_events("dlq", "list", cwd=tmp_path)
    assert result.returncode == 78 and "no configuration file" in result.stderr


def test_a_file_that_is_not_a_store_exits_1_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_text("not a database at all " * 50)
    result = tuya_events("dlq", "list", "--store", str(path))
    assert result.returncode == 1 and "junk.sqlite3" in result.stderr


def test_a_bad_time_is_a_usage_error(store_path: Path) -> None:
    result = tuya_events("dlq", "list", "--store", str(store_path), "--since", "yesterday")
    assert result.returncode == 2 and "not a time" in result.stderr


# -- purge --------------------------------------------------------------------------------------


def test_purge_refuses_without_a_filter_unless_all(store_path: Path) -> None:
    result = tuya_events("dlq", "purge", "--yes", "--store", str(store_path))
    assert result.returncode == 64 and "--all" in result.stderr
    assert len(remaining(store_path)) == 3
    result = tuya_events("dlq", "purge", "--all", "--yes", "--store", str(store_path))
    assert result.returncode == 0 and "purged 3" in result.stdout
    assert remaining(store_path) == []


def test_purge_off_a_terminal_needs_yes(store_path: Path) -> None:
    result = tuya_events(
        "dlq", "purge", "--stage", "handler", "--store", str(store_path), stdin="y\n"
    )
    assert result.returncode == 64 and "--yes" in result.stderr
    assert len(remaining(store_path)) == 3
    result = tuya_events("dlq", "purge", "--stage", "handler", "--yes", "--store", str(store_path))
    assert result.returncode == 0 and "purged 2" in result.stdout
    assert remaining(store_path) == ["bad_padding"]


def test_purge_with_nothing_matching(store_path: Path) -> None:
    result = tuya_events("dlq", "purge", "--reason", "nope", "--yes", "--store", str(store_path))
    assert result.returncode == 0 and "nothing purged" in result.stderr


def purge_on_a_terminal(store_path: Path, answer: bytes) -> subprocess.CompletedProcess:
    """Run purge with a pseudo-terminal as stdin and type ``answer`` into it."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(TUYA_EVENTS), "dlq", "purge", "--reason", "timeout", "--store", str(store_path)],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(controller, answer)
        out, err = process.communicate(timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_purge_on_a_terminal_asks_and_respects_no(store_path: Path) -> None:
    result = purge_on_a_terminal(store_path, b"n\n")
    assert "Delete 1 dead letter(s)" in result.stderr and "[y/N]" in result.stderr
    assert result.returncode == 1 and "not purged" in result.stderr
    assert remaining(store_path) == ["bad_padding", "http_500", "timeout"]


def test_purge_on_a_terminal_deletes_after_yes(store_path: Path) -> None:
    result = purge_on_a_terminal(store_path, b"y\n")
    assert result.returncode == 0, result.stderr
    assert "purged 1" in result.stdout
    assert remaining(store_path) == ["bad_padding", "http_500"]
    with DeadLetterStore(store_path) as store:
        assert store.count(RecordFilter(reason="timeout")) == 0
