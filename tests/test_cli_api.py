"""``tuya-events api`` as a user runs it: the installed executable, against the shared-doc vectors
(dry run) and the fake Tuya OpenAPI on 127.0.0.1 (real calls)."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import vectors as v
from tests.fake_tuya_openapi import FakeTuyaOpenApi
from tests.support.cli import run_cli
from tests.support.ports import free_port
from tests.support.servers import serving

CREDENTIALS = ("--access-id", v.API_CLIENT_ID, "--access-secret", v.API_SECRET)
FIXED = ("--t", v.API_T, "--nonce", v.API_NONCE)
SIGNATURE_HEADERS = tuple(
    arg
    for name, value in v.API_SIGNATURE_HEADERS.items()
    for arg in ("--signature-header", f"{name}:{value}")
)


def tuya_events(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``tuya-events api ARGS``."""
    return run_cli("api", *args, env=env)


def field(output: str, name: str) -> str:
    """The value of a ``name: value`` line of the dry-run output."""
    for line in output.splitlines():
        if line.startswith(name + ": "):
            return line[len(name) + 2 :]
    raise AssertionError(f"no {name!r} line in:\n{output}")


def headers_of(output: str) -> dict[str, str]:
    lines = output.splitlines()
    start = lines.index("headers:") + 1
    found = {}
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        name, _, value = line.strip().partition(": ")
        found[name] = value
    return found


def write_config(tmp_path: Path, url: str | None = None, extra: str = "") -> Path:
    """A configuration with the vectors' project, ``extra`` YAML appended (e.g. openapi:)."""
    config = tmp_path / "config.yaml"
    text = f"tuya:\n  access_id: {v.API_CLIENT_ID}\n  access_secret: {v.API_SECRET}\n  region: eu\n"
    if url:
        text += f"  openapi_url: {url}\n"
    config.write_text(text + extra)
    return config


@pytest.fixture
def server() -> Iterator[FakeTuyaOpenApi]:
    with serving() as start:
        yield start(FakeTuyaOpenApi(v.API_CLIENT_ID, v.API_SECRET))


@pytest.fixture
def legacy_server() -> Iterator[FakeTuyaOpenApi]:
    """A project from before mid-2021: it accepts legacy signs only."""
    with serving() as start:
        yield start(FakeTuyaOpenApi(v.API_CLIENT_ID, v.API_SECRET, legacy=True))


# -- dry run -----------------------------------------------------------------------------------


def test_dry_run_of_the_token_call_vector() -> None:
    result = tuya_events(
        "GET", "/v1.0/token?grant_type=1", "--dry-run", *CREDENTIALS, *FIXED, *SIGNATURE_HEADERS
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert field(out, "sign") == v.API_TOKEN_SIGN
    assert field(out, "call") == "token call"
    assert json.loads(field(out, "signed string")).startswith(v.API_CLIENT_ID + v.API_T)
    assert "access_token" not in headers_of(out)
    assert field(out, "request").endswith("(no URL: give --url, --region or -c)")


def test_dry_run_of_the_business_call_vector_prints_every_input_of_the_sign() -> None:
    result = tuya_events(
        "GET",
        "/v2.0/apps/schema/users?page_size=50",
        "--query",
        "page_no=1",
        "--access-token",
        v.API_ACCESS_TOKEN,
        "--dry-run",
        "--region",
        "eu",
        *CREDENTIALS,
        *FIXED,
        *SIGNATURE_HEADERS,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert field(out, "sign") == v.API_BUSINESS_SIGN
    to_sign = (
        "GET\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "area_id:29a33e8796834b1efa6\ncall_id:8afdb70ab2ed11eb85290242ac130003\n\n"
        "/v2.0/apps/schema/users?page_no=1&page_size=50"
    )
    assert json.loads(field(out, "string-to-sign")) == to_sign
    assert json.loads(field(out, "signed string")) == (
        v.API_CLIENT_ID + v.API_ACCESS_TOKEN + v.API_T + v.API_NONCE + to_sign
    )
    assert "  | area_id:29a33e8796834b1efa6" in out.splitlines()
    assert field(out, "request") == (
        "GET https://openapi.tuyaeu.com/v2.0/apps/schema/users?page_no=1&page_size=50"
    )
    assert headers_of(out) == {
        "client_id": v.API_CLIENT_ID,
        "sign": v.API_BUSINESS_SIGN,
        "sign_method": "HMAC-SHA256",
        "t": v.API_T,
        "access_token": v.API_ACCESS_TOKEN,
        "nonce": v.API_NONCE,
        "Signature-Headers": "area_id:call_id",
        "area_id": v.API_SIGNATURE_HEADERS["area_id"],
        "call_id": v.API_SIGNATURE_HEADERS["call_id"],
        "lang": "en",
    }
    assert v.API_SECRET not in out + result.stderr
    again = tuya_events(
        "GET",
        "/v2.0/apps/schema/users?page_no=1&page_size=50",
        "--access-token",
        v.API_ACCESS_TOKEN,
        "--dry-run",
        "--region",
        "eu",
        *CREDENTIALS,
        *FIXED,
        *SIGNATURE_HEADERS,
    )
    assert again.stdout == out  # reproducible, and the query order does not matter


def test_dry_run_hashes_the_body_byte_for_byte_and_sends_nothing(
    server: FakeTuyaOpenApi,
) -> None:
    body = '{"commands": [{"code": "switch_1", "value": true}]}'
    result = tuya_events(
        "post",
        "/v1.0/iot-03/devices/d1/commands",
        "--body",
        body,
        "--access-token",
        "tok",
        "--dry-run",
        "--url",
        server.url,
        *CREDENTIALS,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert field(out, "content-sha256") == hashlib.sha256(body.encode()).hexdigest()
    assert field(out, "body") == body
    assert headers_of(out)["Content-Type"] == "application/json"
    assert len(headers_of(out)["nonce"]) == 32  # a fresh one, since none was given
    assert field(out, "request") == f"POST {server.url}/v1.0/iot-03/devices/d1/commands"
    assert server.received == []


def test_dry_run_with_the_legacy_scheme() -> None:
    result = tuya_events(
        "GET",
        "/v1.0/devices/d1",
        "--access-token",
        v.API_ACCESS_TOKEN,
        "--t",
        v.API_T,
        "--legacy-signing",
        "--dry-run",
        *CREDENTIALS,
    )
    assert result.returncode == 0, result.stderr
    wanted = hmac.new(
        v.API_SECRET.encode(),
        (v.API_CLIENT_ID + v.API_ACCESS_TOKEN + v.API_T).encode(),
        hashlib.sha256,
    ).hexdigest()
    assert field(result.stdout, "sign") == wanted.upper()
    assert field(result.stdout, "signing").startswith("legacy")
    assert "string-to-sign" not in result.stdout and "nonce" not in headers_of(result.stdout)


def test_dry_run_takes_legacy_signing_and_lang_from_the_config_and_flags_override_them(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, extra="openapi:\n  legacy_signing: true\n  lang: zh\n")
    call = ("GET", "/v1.0/devices/d1", "--access-token", v.API_ACCESS_TOKEN, "--t", v.API_T)
    result = tuya_events(*call, "--dry-run", "-c", str(config))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert field(out, "signing") == "legacy (HMAC-SHA256 of client_id + access_token + t)"
    assert json.loads(field(out, "signed string")) == (
        v.API_CLIENT_ID + v.API_ACCESS_TOKEN + v.API_T
    )
    assert headers_of(out)["lang"] == "zh" and "nonce" not in headers_of(out)
    current = tuya_events(
        *call, "--dry-run", "-c", str(config), "--no-legacy-signing", "--lang", "en"
    )
    assert current.returncode == 0, current.stderr
    assert field(current.stdout, "signing").startswith("current")
    assert headers_of(current.stdout)["lang"] == "en"
    nonce = tuya_events(*call, "--dry-run", "-c", str(config), "--nonce", "n")
    assert nonce.returncode == 64 and "openapi.legacy_signing" in nonce.stderr


def test_an_older_config_with_the_options_in_an_action_handler_block(tmp_path: Path) -> None:
    """Without a top-level openapi:, the block the daemon's action handlers use is used."""
    handler = (
        "handlers:\n  - type: action\n    openapi: {legacy_signing: true}\n    rules:\n"
        "      - {when: {}, then: {command: {code: switch_1, value: true}}}\n"
    )
    config = write_config(tmp_path, extra=handler)
    result = tuya_events(
        "GET", "/v1.0/token?grant_type=1", "--t", v.API_T, "--dry-run", "-c", str(config)
    )
    assert result.returncode == 0, result.stderr
    assert field(result.stdout, "signing") == "legacy (HMAC-SHA256 of client_id + t)"


def test_a_wrong_openapi_section_exits_78_with_its_key_path(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="openapi:\n  lang: e n\n  timeout: soon\n")
    result = tuya_events("GET", "/v1.0/devices/d1", "--dry-run", "-c", str(config))
    assert result.returncode == 78
    assert "openapi.lang" in result.stderr and "openapi.timeout" in result.stderr
    assert "Traceback" not in result.stderr


# -- real calls --------------------------------------------------------------------------------


def test_a_command_and_a_query_with_credentials_from_the_environment(
    server: FakeTuyaOpenApi,
) -> None:
    env = {"TUYA_ACCESS_ID": v.API_CLIENT_ID, "TUYA_ACCESS_SECRET": v.API_SECRET}
    body = '{"commands":[{"code":"switch_1","value":true}]}'
    sent = tuya_events(
        "POST", "/v1.0/iot-03/devices/d1/commands", "--body", body, "--url", server.url, env=env
    )
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout) is True
    status = tuya_events("GET", "/v1.0/iot-03/devices/d1/status", "--url", server.url, env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == [{"code": "switch_1", "value": True}]
    assert server.codes() == [None, None, None, None]  # token, command, token, query
    [command] = server.commands()
    assert command.body == body.encode()  # byte for byte


def test_credentials_and_url_from_the_config(tmp_path: Path, server: FakeTuyaOpenApi) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"tuya:\n  access_id: {v.API_CLIENT_ID}\n  access_secret: {v.API_SECRET}\n"
        f"  region: eu\n  openapi_url: {server.url}\n"
    )
    result = tuya_events("GET", "/v1.0/token?grant_type=1", "-c", str(config))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["expire_time"] == 7200 and answer["access_token"]
    assert [r.path for r in server.received] == ["/v1.0/token"]  # a token call needs no token


def test_a_legacy_project_called_with_the_options_from_the_config(
    tmp_path: Path, legacy_server: FakeTuyaOpenApi
) -> None:
    extra = "openapi:\n  legacy_signing: true\n  lang: de\n"
    config = write_config(tmp_path, legacy_server.url, extra)
    result = tuya_events("GET", "/v1.0/devices/d1", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["id"] == "d1"
    assert legacy_server.codes() == [None, None]  # the token, the query: legacy signs pass
    assert {r.headers["lang"] for r in legacy_server.received} == {"de"}
    current = tuya_events("GET", "/v1.0/devices/d1", "-c", str(config), "--no-legacy-signing")
    assert current.returncode == 78 and "1004" in current.stderr  # the flag overrides


def test_timeout_and_attempts_come_from_the_config(tmp_path: Path, server: FakeTuyaOpenApi) -> None:
    server.delay = 1.0
    extra = "openapi:\n  timeout: 300ms\n  max_attempts: 1\n"
    config = write_config(tmp_path, server.url, extra)
    result = tuya_events("GET", "/v1.0/token?grant_type=1", "-c", str(config))
    assert result.returncode == 69
    assert "within 0.3s" in result.stderr and "Traceback" not in result.stderr
    assert "retrying" not in result.stdout + result.stderr  # one attempt


def test_a_given_access_token_is_used_as_is(server: FakeTuyaOpenApi) -> None:
    token = server.issue_token()
    ok = tuya_events(
        "GET", "/v1.0/devices/d1", "--access-token", token, "--url", server.url, *CREDENTIALS
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["id"] == "d1"
    bad = tuya_events(
        "GET", "/v1.0/devices/d1", "--access-token", "f" * 32, "--url", server.url, *CREDENTIALS
    )
    assert bad.returncode == 69
    assert "1011" in bad.stderr and "token invalid" in bad.stderr
    assert [r.path for r in server.received] == ["/v1.0/devices/d1", "/v1.0/devices/d1"]


def test_a_wrong_secret_exits_78_with_the_hint_and_no_traceback(server: FakeTuyaOpenApi) -> None:
    wrong = "w" * 32
    result = tuya_events(
        "GET", "/v1.0/devices/d1", "--url", server.url, "--access-id", v.API_CLIENT_ID,
        "--access-secret", wrong,
    )  # fmt: skip
    assert result.returncode == 78
    assert "1004" in result.stderr and "--dry-run" in result.stderr and "tid" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert wrong not in result.stderr


def test_permission_deny_exits_78_and_says_to_link_the_device(server: FakeTuyaOpenApi) -> None:
    server.linked_devices = set()
    result = tuya_events("GET", "/v1.0/devices/d9", "--url", server.url, *CREDENTIALS)
    assert result.returncode == 78 and "Link App Account" in result.stderr


def test_an_unreachable_openapi_exits_69() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = tuya_events("GET", "/v1.0/devices/d1", "--url", url, *CREDENTIALS)
    assert result.returncode == 69 and "cannot reach" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("GET", "/v1.0/devices/d1", "--url", "http://x"), "TUYA_ACCESS_ID"),
        (("GET", "/v1.0/devices/d1", "--query", "novalue", *CREDENTIALS), "KEY=VALUE"),
        (("POST", "/v1.0/x", "--body", "{not json", *CREDENTIALS), "not valid JSON"),
        (("GET", "/v1.0/devices/d1", "--dry-run", *CREDENTIALS), "--access-token"),
        (("GET", "/v1.0/devices/d1", *CREDENTIALS), "--url or --region"),
        (("GET", "v1.0/devices/d1", *CREDENTIALS), "must start with /"),
        (("GET", "/v1.0/x", "--t", "soon", "--dry-run", *CREDENTIALS), "milliseconds"),
        (("GET", "/v1.0/x", "--legacy-signing", "--nonce", "n", *CREDENTIALS), "legacy"),
        (("GET", "/v1.0/x", "--signature-header", "novalue", *CREDENTIALS), "NAME:VALUE"),
        (("GET", "/v1.0/x", "--lang", "e n", "--dry-run", *CREDENTIALS), "--lang"),
    ],
)
def test_usage_errors_exit_64_and_say_what_to_do(args: tuple[str, ...], words: str) -> None:
    result = tuya_events(*args)
    assert result.returncode == 64, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
