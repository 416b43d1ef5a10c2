"""Every secret of a configuration reaches the redactor: the Tuya credentials and the secrets of
every handler type (a handler's token in a log line is a leak, whichever handler it is)."""

from __future__ import annotations

import pytest

from tests import vectors as v
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.secrets import secret_values
from tuya_events.observability.redact import MASK, Redactor
from tuya_events.tuya.auth import pulsar_password

TUYA = {"access_id": v.ACCESS_ID, "access_secret": v.ACCESS_SECRET, "region": "eu"}

WEBHOOK_AUTH = {"Authorization": "Basic abc123xyz"}
PLUGIN = {"type": "x.y:Plugin", "password": "plugin-pw-1", "nested": [{"token": "list-token-1"}]}
HANDLERS = [
    # (handler, the secrets in it)
    ({"type": "webhook", "url": "https://h/", "secret": "whsec_webhook-1"}, ["whsec_webhook-1"]),
    (
        {"type": "webhook", "url": "https://u:webhook-url-pw@h/", "headers": WEBHOOK_AUTH},
        ["webhook-url-pw", "abc123xyz"],
    ),
    (
        {"type": "pulsar", "service_url": "pulsar://h:6650", "token": "pulsar-token-1"},
        ["pulsar-token-1"],
    ),
    ({"type": "database", "dsn": "postgresql://user:db-pw-1@h/db"}, ["db-pw-1"]),
    (PLUGIN, ["plugin-pw-1", "list-token-1"]),
]


@pytest.mark.parametrize(("handler", "secrets"), HANDLERS, ids=lambda x: str(x)[:30])
def test_secrets_of_each_handler_type_are_collected(handler: dict, secrets: list[str]) -> None:
    settings = settings_from_mapping({"tuya": TUYA, "handlers": [handler]}, {})
    values = secret_values(settings)
    for secret in secrets:
        assert secret in values, secret
    redact = Redactor(values)
    for secret in secrets:
        assert secret not in redact(f"failed: {secret}").replace(MASK, "\0")


def test_secrets_of_several_handlers_all_collected_once() -> None:
    handlers = [{**handler, "name": f"h{i}"} for i, (handler, _) in enumerate(HANDLERS)]
    tree = {"tuya": TUYA, "handlers": handlers}
    values = secret_values(settings_from_mapping(tree, {}))
    for _, secrets in HANDLERS:
        for secret in secrets:
            assert secret in values
    assert len(values) == len(set(values))


def test_the_tuya_credentials_come_first_and_no_placeholder() -> None:
    values = secret_values(settings_from_mapping({"tuya": TUYA}, {}))
    assert values[:2] == [v.ACCESS_SECRET, pulsar_password(v.ACCESS_ID, v.ACCESS_SECRET)]
    assert "**********" not in values
    assert v.ACCESS_ID not in values  # an identifier, not a secret


def test_non_secret_values_are_not_collected() -> None:
    handler = {"type": "webhook", "url": "https://h/hook", "headers": {"X-Team": "ops"}}
    values = secret_values(settings_from_mapping({"tuya": TUYA, "handlers": [handler]}, {}))
    assert "ops" not in values and "https://h/hook" not in values and "webhook" not in values
