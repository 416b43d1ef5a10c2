"""The Pulsar message body: a JSON envelope around the encrypted event, and its ``sign``."""

from __future__ import annotations

import hashlib
from typing import Any

SIGNED_EXCLUDE = "sign"


def _sign_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def envelope_sign(envelope: dict[str, Any], access_secret: str) -> str:
    """Tuya's documented envelope signature (unconfirmed against live traffic).

    Every top-level field except ``sign`` and empty ones, as ``key=value`` sorted by key, joined
    with ``||``, then ``||`` + the access secret, MD5 as lowercase hex.
    """
    parts = [
        f"{key}={_sign_value(value)}"
        for key, value in sorted(envelope.items())
        if key != SIGNED_EXCLUDE and value is not None and value != ""
    ]
    text = "||".join(parts) + "||" + access_secret
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()
