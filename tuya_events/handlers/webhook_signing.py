"""Standard Webhooks signing (https://www.standardwebhooks.com, spec 1.0.0, symmetric ``v1``).

A request carries three headers: ``webhook-id`` (stable across retries, the receiver's
idempotency key), ``webhook-timestamp`` (unix seconds of this attempt, so a receiver can refuse
replays) and ``webhook-signature`` (``v1,`` + base64 of HMAC-SHA256 over ``{id}.{timestamp}.{body}``
with the exact body bytes sent).

The key: the spec serialises secrets as ``whsec_`` + base64 of the key bytes, so such a secret is
base64-decoded; any other secret is used as its UTF-8 bytes, which is what receivers whose
secret is a plain string (many frameworks) expect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
# The spec asks for a random key of at least 24 bytes; shorter ones still work, with a warning.
RECOMMENDED_KEY_BYTES = 24

# The spec warns that a "." in the id would make ``{id}.{timestamp}.{body}`` ambiguous; an id is
# also a header value. Ids outside this set (Tuya's dataIds and Pulsar message ids are inside it)
# are replaced by a digest, which is just as stable.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_\-:,()+=/@]{1,200}$")


def signing_key(secret: str) -> bytes:
    """The HMAC key: ``whsec_<base64>`` decoded, else the secret's UTF-8 bytes.

    Raises ValueError (without the secret in the message) for a malformed ``whsec_`` secret.
    """
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX) :]
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                f"a {SECRET_PREFIX} secret must be {SECRET_PREFIX} followed by base64 "
                "(the Standard Webhooks form); otherwise drop the prefix"
            ) from None
        if not key:
            raise ValueError(f"the base64 after {SECRET_PREFIX} is empty")
        return key
    if not secret:
        raise ValueError("must not be empty")
    return secret.encode("utf-8")


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{id}.{timestamp}.{body}``."""
    signed = b"%s.%d.%s" % (message_id.encode("utf-8"), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signed_headers(
    key: bytes, message_id: str, body: bytes, clock: Callable[[], float] = time.time
) -> dict[str, str]:
    """The three headers for one attempt: a fresh timestamp each time, the same id."""
    timestamp = int(clock())
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(key, message_id, timestamp, body),
    }


def webhook_id(event_id: str) -> str:
    """The event id as ``webhook-id``, or ``evt_<digest>`` when it is not safe to sign or send."""
    if _SAFE_ID.match(event_id):
        return event_id
    return "evt_" + hashlib.sha256(event_id.encode("utf-8")).hexdigest()[:32]


def batch_id(event_ids: Iterable[str]) -> str:
    """``batch_`` + the first 32 hex digits of SHA-256 over the events' ids joined by newlines.

    Ids in body order, as they appear in each element's ``id``: the same events in the same
    order give the same id, so a receiver can also recompute it from the body.
    """
    joined = "\n".join(event_ids).encode("utf-8")
    return "batch_" + hashlib.sha256(joined).hexdigest()[:32]
