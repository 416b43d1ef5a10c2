"""The Pulsar message body: a JSON envelope around the encrypted event, and its ``sign``."""

from __future__ import annotations

import hashlib
from typing import Any

SIGNED_EXCLUDE = "sign"


class UnsignableEnvelope(ValueError):
    """A field the formula cannot sign: Tuya's envelope fields are strings, numbers and booleans.

    Raised rather than signing ``str()`` of a nested value, which is no formula Tuya documents and
    which recursion turns into a crash for a deeply nested one.
    """


def _sign_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise UnsignableEnvelope(f"a {type(value).__name__} field cannot be signed")
    return str(value)


def envelope_sign(envelope: dict[str, Any], access_secret: str) -> str:
    """Tuya's documented envelope signature (unconfirmed against live traffic).

    Every top-level field except ``sign`` and empty ones, as ``key=value`` sorted by key, joined
    with ``||``, then ``||`` + the access secret, MD5 as lowercase hex. A nested field raises
    :class:`UnsignableEnvelope`.
    """
    if len(envelope) == 5:
        fast = _usual_envelope_sign_text(envelope, access_secret)
        if fast is not None:
            return hashlib.md5(fast.encode("utf-8"), usedforsecurity=False).hexdigest()
    parts = [
        f"{key}={_sign_value(value)}"
        for key, value in sorted(envelope.items())
        if key != SIGNED_EXCLUDE and value is not None and value != ""
    ]
    text = "||".join(parts) + "||" + access_secret
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _usual_envelope_sign_text(envelope: dict[str, Any], access_secret: str) -> str | None:
    """The text to sign for Tuya's usual five-key envelope, without sorting or a list per message.

    Only when every field is present, of the usual type and non-empty, so the result is exactly
    what the general formula gives; None sends anything else down the general code.
    """
    data = envelope.get("data")
    protocol = envelope.get("protocol")
    pv = envelope.get("pv")
    t = envelope.get("t")
    if (
        "sign" not in envelope
        or type(data) is not str
        or type(protocol) is not int
        or type(pv) is not str
        or type(t) is not int
        or not data
        or not pv
    ):
        return None
    return f"data={data}||protocol={protocol}||pv={pv}||t={t}||{access_secret}"
