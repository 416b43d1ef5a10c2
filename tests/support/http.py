"""Plain HTTP GETs against the servers the tests start on 127.0.0.1."""

from __future__ import annotations

import urllib.error
import urllib.request


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """``(status, body)`` of ``GET http://127.0.0.1:{port}{path}``; ``(0, why)`` when nothing
    answered (refused, reset, timed out), so a poll loop can keep asking."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)
