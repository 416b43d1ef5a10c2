"""One exception for every way an OpenAPI call fails, with a hint of what to check.

Tuya answers HTTP 200 with ``success: false`` and a numeric ``code``; transport failures get a
``reason`` of their own (``network_error``, ``timeout``, ``http_5xx``, ...). The class decides
what the client retries and what a handler should dead-letter.
"""

from __future__ import annotations

SIGN_INVALID = 1004
TOKEN_EXPIRED = 1010
TOKEN_INVALID = 1011
TOKEN_STATUS_INVALID = 1012
REQUEST_TIME_INVALID = 1013
PARAM_EMPTY = 1100
PERMISSION_DENY = 1106
URI_PATH_INVALID = 1108
OVER_LIMIT = 1110
SYSTEM_BUSY = 1111
SYSTEM_ERROR = 500

TOKEN_CODES = frozenset({TOKEN_EXPIRED, TOKEN_INVALID, TOKEN_STATUS_INVALID})
TRANSIENT_CODES = frozenset({OVER_LIMIT, SYSTEM_BUSY, SYSTEM_ERROR})
CONFIG_CODES = frozenset({SIGN_INVALID, REQUEST_TIME_INVALID, PERMISSION_DENY})

SHARED_KEY_HINT = (
    "tokens keep being invalidated: two processes (another daemon, a script, an SDK) may share "
    "this Access ID/Secret; each one that gets a token invalidates the other's"
)

_HINTS = {
    SIGN_INVALID: "sign invalid: check tuya.access_id/access_secret (the cloud project's Access "
    "ID/Secret), the region or openapi_url (the project's data center), the clock, and the "
    "signing scheme (legacy_signing only for projects created before mid-2021); "
    "`tuya-events api --dry-run` prints the string-to-sign",
    REQUEST_TIME_INVALID: "request time invalid: this machine's clock is off (t is epoch "
    "milliseconds); synchronise it with NTP",
    PERMISSION_DENY: "permission deny: link the device to the cloud project (Devices > Link App "
    "Account) and check the API family (/v1.0/iot-03/devices/... vs /v1.0/devices/...) that the "
    "project is authorised for",
    URI_PATH_INVALID: "uri path invalid: check the path and the API family the project uses",
    PARAM_EMPTY: "a required parameter is empty: check the body and query",
    OVER_LIMIT: "over Tuya's request limit (device commands: 4/s per cloud project); a later "
    "attempt may work; lower openapi.rate_limits if this keeps happening",
    SYSTEM_BUSY: "Tuya's system is busy; a later attempt may work",
    TOKEN_EXPIRED: "access token expired",
    TOKEN_INVALID: "access token invalid",
    TOKEN_STATUS_INVALID: "access token status invalid",
}
_SUBSCRIPTION_HINT = (
    "the cloud service API is not subscribed, not authorised for this project, or its "
    "subscription expired: Cloud > Development > your project > Service API"
)


def is_subscription_code(code: int) -> bool:
    """2884xxxx: service not subscribed / authorised / expired (28841105, 28841002, ...)."""
    return 28840000 <= code <= 28849999


def hint_for(code: int) -> str | None:
    if is_subscription_code(code):
        return _SUBSCRIPTION_HINT
    return _HINTS.get(code)


class OpenApiError(Exception):
    """A failed call: Tuya's ``code``/``msg``/``tid``, or a transport ``reason``, and a hint.

    ``retryable``: the same call may work later (network, HTTP 5xx, 1110, 1111).
    ``infrastructure``: Tuya could not be reached or answered 5xx (an outage, not the event's
    fault). ``configuration``: the project or this configuration is wrong (1004, 1013, 1106,
    2884xxxx): retrying cannot help, a person has to look.
    """

    def __init__(
        self,
        code: int | None,
        msg: str,
        tid: str | None = None,
        hint: str | None = None,
        *,
        reason: str | None = None,
        status: int | None = None,
        path: str | None = None,
    ) -> None:
        self.code = code
        self.msg = msg
        self.tid = tid
        self.hint = hint if hint is not None else (hint_for(code) if code is not None else None)
        self.reason = reason or (str(code) if code is not None else "error")
        self.status = status
        self.path = path
        super().__init__(self.describe())

    @property
    def token_problem(self) -> bool:
        return self.code in TOKEN_CODES

    @property
    def infrastructure(self) -> bool:
        return self.code is None and self.reason in ("network_error", "timeout", "http_5xx")

    @property
    def retryable(self) -> bool:
        return self.infrastructure or self.code in TRANSIENT_CODES

    @property
    def configuration(self) -> bool:
        return self.code is not None and (
            self.code in CONFIG_CODES or is_subscription_code(self.code)
        )

    def describe(self) -> str:
        what = f"Tuya error {self.code}: {self.msg}" if self.code is not None else self.msg
        if self.path:
            what = f"{self.path}: {what}"
        if self.tid:
            what += f" (tid {self.tid})"
        if self.hint:
            what += f" -- {self.hint}"
        return what
