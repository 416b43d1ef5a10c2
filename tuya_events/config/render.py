"""The effective configuration as YAML, secrets masked: what ``check-config`` prints."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tuya_events.config.settings import SECRET_KEYS, Settings

MASK = "********"
_URL_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+(@)")


_CREDENTIAL_HEADER = re.compile(r"auth|token|key|secret|password|cookie|signature", re.IGNORECASE)


def _mask_headers(headers: dict[str, Any]) -> dict[str, Any]:
    return {
        name: MASK if _CREDENTIAL_HEADER.search(str(name)) and value else value
        for name, value in headers.items()
    }


def _mask(key: Any, value: Any) -> Any:
    if isinstance(value, dict):
        if key == "headers":
            return _mask_headers(value)
        return {k: _mask(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(None, v) for v in value]
    if key in SECRET_KEYS and value not in (None, ""):
        if key == "dsn" and isinstance(value, str) and "://" in value:
            return _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<2>", value)
        return MASK
    return value


def effective_config(settings: Settings) -> dict[str, Any]:
    data = settings.model_dump(mode="json")
    data["tuya"]["access_secret"] = MASK
    data["http"]["listen"] = "{}:{}".format(*settings.http.listen)
    return _mask(None, data)


def render_effective_config(settings: Settings) -> str:
    return yaml.safe_dump(effective_config(settings), sort_keys=False, default_flow_style=False)
