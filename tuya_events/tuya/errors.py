"""One exception family for every way a Tuya message can fail to decode.

The ``reason`` is a stable, machine-readable code: it labels metrics and dead-letter records, so
codes are never renamed, only added.
"""

from __future__ import annotations

from typing import Final

BAD_ENVELOPE: Final = "bad_envelope"
BAD_BASE64: Final = "bad_base64"
UNKNOWN_EM: Final = "unknown_em"
TOO_SHORT: Final = "too_short"
BAD_LENGTH: Final = "bad_length"
BAD_PADDING: Final = "bad_padding"
GCM_AUTH_FAILED: Final = "gcm_auth_failed"
BAD_JSON: Final = "bad_json"
BAD_EVENT: Final = "bad_event"
BAD_SIGN: Final = "bad_sign"
TOO_DEEP: Final = "too_deep"
DECODER_ERROR: Final = "decoder_error"

REASONS: Final = (
    BAD_ENVELOPE,
    BAD_BASE64,
    UNKNOWN_EM,
    TOO_SHORT,
    BAD_LENGTH,
    BAD_PADDING,
    GCM_AUTH_FAILED,
    BAD_JSON,
    BAD_EVENT,
    BAD_SIGN,
    TOO_DEEP,
    DECODER_ERROR,
)


class DecodeError(Exception):
    """A message that cannot be turned into an event; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
