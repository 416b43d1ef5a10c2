"""The CLI under bad input and bugs: a clear message and the documented exit code, never a bare
traceback; a bug's traceback (exit 70) with every known secret masked (issue 12)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import vectors as v
from tests.support.paths import ROOT
from tuya_events.cli.exits import CONFIG, DATA_ERROR, SOFTWARE, USAGE
from tuya_events.observability.redact import MASK


def cli(
    *args: str | Path, stdin: bytes | None = None, env: dict[str, Any] | None = None
) -> subprocess.CompletedProcess:
    """``python -m tuya_events.cli.main ARGS``; stdout and stderr as text."""
    environ: dict[Any, Any] = {k: val for k, val in os.environ.items() if not k.startswith("TUYA")}
    environ.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "tuya_events.cli.main", *args],
        input=stdin,
        capture_output=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
    )
    result.stdout = result.stdout.decode("utf-8", "replace")
    result.stderr = result.stderr.decode("utf-8", "replace")
    return result


# -- a bug of ours (or of a plugin): exit 70, masked traceback ------------------------------------

BROKEN = """
from tuya_events.handlers.base import BaseHandler


class Broken(BaseHandler):
    def __init__(self, name, options, context):
        secret = context.settings.tuya.access_secret.get_secret_value()
        raise RuntimeError(f"unexpected state near {secret}")
"""


def test_an_unexpected_exception_exits_70_with_the_traceback_masked(tmp_path: Path) -> None:
    (tmp_path / "broken_plugin.py").write_text(BROKEN)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"tuya:\n  access_id: a\n  access_secret: {v.ACCESS_SECRET}\n  region: eu\n"
        "handlers:\n  - type: broken_plugin:Broken\n"
    )
    result = cli("check-config", "-c", config, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == SOFTWARE, result.stderr
    assert "Traceback" in result.stderr  # a bug report wants it ...
    assert v.ACCESS_SECRET not in result.stderr  # ... without the secret
    last = result.stderr.strip().splitlines()
    assert f"internal error: RuntimeError: unexpected state near {MASK}" in last[-2]
    assert "bug" in last[-1] and result.stdout == ""


# -- decrypt: bad frames are data errors, bad secrets usage errors --------------------------------


def frame(properties: Any) -> str:
    envelope = json.dumps({"data": v.ECB_DATA, "protocol": 4}).encode()
    return json.dumps({"payload": base64.b64encode(envelope).decode(), "properties": properties})


@pytest.mark.parametrize(
    "properties",
    [{"em": 1}, {"em": ["aes_gcm"]}, {"em": {"x": 1}}, {"em": True}, {"em": 1.5}],
    ids=["int", "list", "object", "bool", "float"],
)
def test_decrypt_a_frame_whose_em_is_not_a_string_exits_65(properties: Any) -> None:
    result = cli("decrypt", "--access-secret", v.ACCESS_SECRET, frame(properties))
    assert result.returncode == DATA_ERROR, result.stderr
    assert "unknown_em" in result.stderr and "Traceback" not in result.stderr
    assert v.ACCESS_SECRET not in result.stderr


def test_decrypt_a_frame_without_em_or_with_odd_properties_still_decrypts() -> None:
    for properties in ({}, None, [], {"em": None}, {"em": "AES_ECB"}):
        result = cli("decrypt", "--access-secret", v.ACCESS_SECRET, frame(properties))
        assert result.returncode == 0, (properties, result.stderr)
        assert result.stdout == v.PLAINTEXT + "\n"


@pytest.mark.parametrize(
    ("stdin", "words"),
    [
        (b"\xff\xfe" + json.dumps({"data": v.ECB_DATA}).encode("utf-16-le"), "not UTF-8"),
        (json.dumps({"payload": "é" * 8, "properties": {}}).encode(), "payload is not base64"),
    ],
    ids=["stdin not UTF-8", "payload not ASCII"],
)
def test_decrypt_undecodable_input_exits_65(stdin: bytes, words: str) -> None:
    result = cli("decrypt", "--access-secret", v.ACCESS_SECRET, "-", stdin=stdin)
    assert result.returncode == DATA_ERROR, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr


SHORT = "short-secret"
NOT_ASCII = "ünïcödé-sëcrét-ünïcödé-sëcrét"


@pytest.mark.parametrize(
    ("secret", "how"),
    [
        (SHORT, "option"),
        (SHORT, "environment"),
        (NOT_ASCII, "option"),
        ("x" * 23, "option"),
        (b"\xff" * 32, "environment"),
    ],
    ids=["short option", "short environment", "not ASCII", "one too short", "not UTF-8"],
)
def test_decrypt_with_a_secret_that_cannot_make_a_key_exits_64(secret: Any, how: str) -> None:
    envelope = json.dumps({"data": v.ECB_DATA})
    if how == "option":
        result = cli("decrypt", "--access-secret", secret, envelope)
        source = "--access-secret"
    else:
        result = cli("decrypt", envelope, env={"TUYA_ACCESS_SECRET": secret})
        source = "$TUYA_ACCESS_SECRET"
    assert result.returncode == USAGE, result.stderr
    assert f"error: {source} is not an access secret" in result.stderr
    assert "Traceback" not in result.stderr
    text = secret if isinstance(secret, str) else secret.decode("utf-8", "replace")
    assert text not in result.stderr


def test_decrypt_with_a_config_whose_secret_is_bad_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"tuya:\n  access_id: a\n  access_secret: {NOT_ASCII}\n  region: eu\n")
    result = cli("decrypt", "-c", config, json.dumps({"data": v.ECB_DATA}))
    assert result.returncode == CONFIG, result.stderr
    assert "tuya.access_secret" in result.stderr and "Traceback" not in result.stderr
    assert NOT_ASCII not in result.stderr
