"""Every secret value a configuration holds, so the redactor can mask it wherever it appears."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from tuya_events.config.settings import SECRET_KEYS, Settings
from tuya_events.tuya.auth import pulsar_password


def _from_options(value: Any, key: str | None = None) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _from_options(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _from_options(v, key)
    elif isinstance(value, str) and key in SECRET_KEYS:
        yield value
        if key == "dsn" and "://" in value:
            password = urlsplit(value).password
            if password:
                yield password


def secret_values(settings: Settings) -> list[str]:
    """The access secret, the Pulsar password derived from it, and handlers' secrets."""
    secret = settings.tuya.access_secret.get_secret_value()
    values = [secret, pulsar_password(settings.tuya.access_id, secret)]
    for handler in settings.handlers:
        values.extend(_from_options(handler.options))
    return values
