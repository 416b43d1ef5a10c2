"""The installed ``tuya-events`` command, run as a user runs it: exit codes, stdout, stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests import vectors as v
from tests.support.cli import run_cli
from tests.support.paths import ROOT

ENVELOPE = json.dumps({"data": v.ECB_DATA, "protocol": 4, "pv": "2.0", "t": 1622449865300})


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_decrypt_envelope_prints_the_document_exactly() -> None:
    result = run_cli("decrypt", "--access-secret", v.ACCESS_SECRET, ENVELOPE)
    assert result.returncode == 0, result.stderr
    assert result.stdout == v.PLAINTEXT + "\n"


def test_decrypt_bare_gcm_data_from_stdin_with_secret_from_environment() -> None:
    result = run_cli(
        "decrypt",
        "--em",
        "aes_gcm",
        "-",
        stdin=v.GCM_DATA + "\n",
        env={"TUYA_ACCESS_SECRET": v.ACCESS_SECRET},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(v.PLAINTEXT)


def test_decrypt_websocket_frame_takes_em_from_its_properties() -> None:
    import base64

    envelope = json.dumps({"data": v.GCM_DATA, "protocol": 4}).encode()
    frame = json.dumps(
        {"payload": base64.b64encode(envelope).decode(), "properties": {"em": "aes_gcm"}}
    )
    result = run_cli("decrypt", "--access-secret", v.ACCESS_SECRET, frame)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["devId"] == "devIddevIddevIddevIddevId"


def test_decrypt_event_prints_the_typed_event() -> None:
    result = run_cli("decrypt", "--event", "--access-secret", v.ACCESS_SECRET, ENVELOPE)
    assert result.returncode == 0, result.stderr
    event = json.loads(result.stdout)
    assert event["kind"] == "status" and event["protocol"] == 4
    assert event["statuses"] == [{"code": "code", "value": 280, "t": 1622449865296, "dp_id": None}]


def test_decrypt_secret_from_config(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, f"tuya:\n  access_id: a\n  access_secret: {v.ACCESS_SECRET}\n  region: eu\n"
    )
    result = run_cli("decrypt", "-c", str(config), ENVELOPE)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("--em", "aes_gcm", ENVELOPE), "gcm_auth_failed"),
        (("not-base64!",), "bad_base64"),
        (("{broken",), "bad_envelope"),
        ((v.GCM_DATA,), "bad_length"),
    ],
)
def test_decrypt_failures_exit_65_with_the_reason_and_no_traceback(
    args: tuple[str, ...], reason: str
) -> None:
    result = run_cli("decrypt", "--access-secret", v.ACCESS_SECRET, *args)
    assert result.returncode == 65
    assert reason in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert v.ACCESS_SECRET not in result.stderr


def test_decrypt_without_a_secret_says_where_to_put_one() -> None:
    result = run_cli("decrypt", ENVELOPE)
    assert result.returncode == 64
    assert "TUYA_ACCESS_SECRET" in result.stderr


def test_check_config_prints_masked_effective_config(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, f"tuya:\n  access_id: a\n  access_secret: {v.ACCESS_SECRET}\n  region: eu\n"
    )
    result = run_cli("check-config", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert v.ACCESS_SECRET not in result.stdout + result.stderr
    assert "access_secret: '********'" in result.stdout
    assert "max_in_flight: 1000" in result.stdout


def test_check_config_shows_the_openapi_section_and_rejects_a_handler_block_that_differs(
    tmp_path: Path,
) -> None:
    action = (
        "  - type: action\n    name: lights\n    rules:\n"
        "      - {when: {}, then: {command: {code: switch_1, value: true}}}\n"
    )
    head = f"tuya:\n  access_id: a\n  access_secret: {v.ACCESS_SECRET}\n  region: eu\n"
    head += "openapi:\n  legacy_signing: true\n  lang: de\nhandlers:\n  - type: log\n"
    good = run_cli("check-config", "-c", str(write_config(tmp_path, head + action)))
    assert good.returncode == 0, good.stderr
    shown = yaml.safe_load(good.stdout)["openapi"]
    assert shown["legacy_signing"] is True and shown["lang"] == "de"
    assert shown["rate_limits"]["command"] == {"rate": 4.0, "burst": 1}
    differing = action + "    openapi: {lang: zh}\n"
    bad = run_cli("check-config", "-c", str(write_config(tmp_path, head + differing)))
    assert bad.returncode == 78
    assert "handlers[1].openapi: differs from the top-level openapi: section" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_check_config_errors_exit_78_listing_every_key(tmp_path: Path) -> None:
    secret = "leaky-secret-value"
    config = write_config(
        tmp_path,
        f"tuya:\n  access_id: a\n  access_secret: {secret}\n  region: atlantis\n"
        "consumer:\n  max_in_flight: -1\n",
    )
    result = run_cli("check-config", "-c", str(config))
    assert result.returncode == 78
    assert "tuya.access_secret" in result.stderr
    assert "tuya.region" in result.stderr
    assert "consumer.max_in_flight" in result.stderr
    assert secret not in result.stderr and "Traceback" not in result.stderr


def test_missing_config_file_exits_78(tmp_path: Path) -> None:
    result = run_cli("check-config", "-c", str(tmp_path / "absent.yaml"))
    assert result.returncode == 78 and "cannot read" in result.stderr


def test_version() -> None:
    from tuya_events import __version__

    result = run_cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_check_config_validates_handler_types_options_and_match_rules(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"tuya:\n  access_id: a\n  access_secret: {v.ACCESS_SECRET}\n  region: eu\n"
        "handlers:\n"
        "  - type: carrier-pigeon\n"
        "  - type: log\n    level: loud\n"
        "  - type: log\n    name: doors\n    match:\n      value:\n        door: {greater: 1}\n",
    )
    result = run_cli("check-config", "-c", str(config))
    assert result.returncode == 78, result.stderr
    assert "handlers[0].type: unknown handler type 'carrier-pigeon'" in result.stderr
    assert "handlers[1].level" in result.stderr
    assert "handlers[2].match.value.door.greater" in result.stderr


def test_run_exits_70_naming_a_handler_that_cannot_start(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"tuya:\n  access_id: a\n  access_secret: {v.ACCESS_SECRET}\n  pulsar_url: pulsar://127.0.0.1:1\n"
        f"http:\n  enabled: false\ndead_letter:\n  path: {tmp_path / 'dl.sqlite3'}\n"
        "handlers:\n  - type: tests.support.recorder:FileRecorder\n    name: recorder\n"
        "    path: /nonexistent/dir/handled.jsonl\n",
    )
    result = run_cli("run", "-c", str(config), env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 70, result.stderr
    assert "handler 'recorder' could not start: FileNotFoundError" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("where", "code", "says"),
    [
        ("taken", 69, "is in use"),  # an old instance may still hold it: worth a restart
        ("192.0.2.1", 78, "http.listen"),  # not an address of this host: the operator's to fix
    ],
)
def test_run_names_an_http_listen_address_it_cannot_take(
    tmp_path: Path, where: str, code: int, says: str
) -> None:
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        port = holder.getsockname()[1]
        listen = f"127.0.0.1:{port}" if where == "taken" else f"{where}:{port}"
        config = write_config(
            tmp_path,
            f"tuya:\n  access_id: a\n  access_secret: {v.ACCESS_SECRET}\n"
            "  pulsar_url: pulsar://127.0.0.1:1\n"
            f"http:\n  listen: '{listen}'\ndead_letter:\n  path: {tmp_path / 'dl.sqlite3'}\n",
        )
        result = run_cli("run", "-c", str(config))
    finally:
        holder.close()
    assert result.returncode == code, result.stderr
    assert says in result.stderr and listen in result.stderr
    assert "Traceback" not in result.stderr
