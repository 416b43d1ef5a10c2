"""Secrets never leave the process: every log line and failure message passes through here."""

from __future__ import annotations

from collections.abc import Iterable

MASK = "[REDACTED]"
_MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words


class Redactor:
    """Replaces every known secret value (and the Pulsar password derived from it) in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        known = set(self._secrets) | {s for s in secrets if s and len(s) >= _MIN_SECRET_LENGTH}
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = tuple(sorted(known, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)


# One per process: secrets are registered as configuration is loaded.
REDACTOR = Redactor()
