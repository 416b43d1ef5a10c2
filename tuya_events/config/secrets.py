"""Every secret value a configuration holds, so the redactor can mask it wherever it appears.

The same structure ``check-config`` masks (:mod:`tuya_events.config.render`): secret keys'
values, credential-like headers, and the credentials inside every string that is a URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tuya_events.config.settings import SECRET_KEYS, Settings
from tuya_events.observability.redact import header_secrets, url_secrets
from tuya_events.tuya.auth import pulsar_password


def _from_tree(value: Any, key: Any = None) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "headers" and isinstance(v, dict):
                for name, text in v.items():
                    if isinstance(text, str):
                        yield from header_secrets(str(name), text)
            yield from _from_tree(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _from_tree(v, key)
    elif isinstance(value, str):
        if key in SECRET_KEYS:
            yield value
        yield from url_secrets(value)


def secret_values(settings: Settings) -> list[str]:
    """The access secret, the Pulsar password derived from it, and every other secret in the
    file: secret keys, credential headers, URL and DSN credentials (tuya URLs included)."""
    secret = settings.tuya.access_secret.get_secret_value()
    values = [secret, pulsar_password(settings.tuya.access_id, secret)]
    # The access secret is already in; dumped, it would be pydantic's "**********" placeholder.
    tree = settings.model_dump(mode="json", exclude={"handlers": True, "tuya": {"access_secret"}})
    tree["handlers"] = [handler.options for handler in settings.handlers]
    # Typed secrets (SecretStr) dump as the placeholder too: put their values back.
    ledger_dsn = settings.ledger.dsn
    tree["ledger"]["dsn"] = ledger_dsn.get_secret_value() if ledger_dsn is not None else None
    for section in ("http", "tail"):
        block = getattr(settings, section, None)
        token = getattr(block, "token", None)
        if token is not None and section in tree:
            tree[section]["token"] = token.get_secret_value()
    values.extend(_from_tree(tree))
    return list(dict.fromkeys(values))
