"""Tuya-shaped key pairs, and the file the broker's auth provider checks them against.

The Java provider re-reads the file on every authentication, so registering a pair here takes
effect at once on a running broker: each test can have a tenant and credentials of its own.
"""

from __future__ import annotations

import os
import secrets
import string
import threading
from dataclasses import dataclass
from pathlib import Path

_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class TuyaCredentials:
    """A cloud project's key pair, as Tuya's console shows it (20-char id, 32-char secret)."""

    access_id: str
    access_secret: str

    @classmethod
    def generate(cls) -> TuyaCredentials:
        return cls(_random(20), _random(32))


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


class CredentialsFile:
    """The ``access_id=access_secret`` file named by the broker property ``tuyaCredentialsFile``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pairs: dict[str, str] = {}
        self._lock = threading.Lock()

    def register(self, credentials: TuyaCredentials) -> None:
        """Accept ``credentials`` from now on (replacing an earlier secret for the same id)."""
        _check_token(credentials.access_id)
        _check_token(credentials.access_secret)
        with self._lock:
            self._pairs[credentials.access_id] = credentials.access_secret
            self._write()

    def unregister(self, access_id: str) -> None:
        with self._lock:
            self._pairs.pop(access_id, None)
            self._write()

    def _write(self) -> None:
        # Written aside and renamed: the broker never reads a half-written file.
        text = "".join(f"{key}={value}\n" for key, value in sorted(self._pairs.items()))
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, self.path)


def _check_token(value: str) -> None:
    # Properties syntax gives meaning to these; Tuya's ids and secrets never contain them.
    if not value or any(c in value for c in "=:# \t\r\n\\!"):
        raise ValueError(f"not usable as a Tuya id or secret: {value!r}")
