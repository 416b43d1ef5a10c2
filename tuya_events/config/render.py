"""The effective configuration as YAML, secrets masked: what ``check-config`` prints.

Masked by structure, not by a pattern over the text: the values of secret keys, the values of
credential-like headers, and in every string that is a URL (a DSN, a webhook or Pulsar URL, any
handler's own key) the userinfo password and credential-like query parameters, as
:mod:`tuya_events.observability.redact` parses them.
"""

from __future__ import annotations

from typing import Any

import yaml

from tuya_events.config.settings import SECRET_KEYS, Settings
from tuya_events.observability.redact import is_credential_name, mask_url

MASK = "********"


def _mask_headers(headers: dict[str, Any]) -> dict[str, Any]:
    return {
        name: MASK if value and is_credential_name(str(name)) else _mask(name, value)
        for name, value in headers.items()
    }


def _mask_string(key: Any, value: str) -> str:
    """A secret key's value whole (a DSN keeps its host and database), any URL its credentials."""
    if key in SECRET_KEYS and value and (key != "dsn" or "://" not in value):
        return MASK
    return mask_url(value, MASK)


def _mask(key: Any, value: Any) -> Any:
    if isinstance(value, dict):
        if key == "headers":
            return _mask_headers(value)
        return {k: _mask(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(key, v) for v in value]
    if isinstance(value, str):
        return _mask_string(key, value)
    if key in SECRET_KEYS and value is not None:
        return MASK
    return value


def effective_config(settings: Settings) -> dict[str, Any]:
    data = settings.model_dump(mode="json")
    data["tuya"]["access_secret"] = MASK
    data["http"]["listen"] = "{}:{}".format(*settings.http.listen)
    masked: dict[str, Any] = _mask(None, data)  # a dict comes back a dict
    return masked


def render_effective_config(settings: Settings) -> str:
    return yaml.safe_dump(effective_config(settings), sort_keys=False, default_flow_style=False)
