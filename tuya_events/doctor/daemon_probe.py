"""Is a daemon of this configuration running here? Its metrics say whether messages arrive.

While a daemon is connected the doctor is a standby and is given no message, so its own silence
says nothing; the daemon's ``/metrics`` (at ``http.listen``) does: whether it is connected and
when its last message came.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from tuya_events.config.settings import Settings

CONNECTED = "tuya_events_broker_connected"
LAST_MESSAGE = "tuya_events_last_message_timestamp_seconds"
BUILD_INFO = "tuya_events_build_info"
TIMEOUT = 2.0


@dataclass(frozen=True)
class RunningDaemon:
    url: str
    connected: bool
    last_message: float | None  # epoch seconds; None: none since it started


def metrics_url(settings: Settings) -> str | None:
    if not settings.http.enabled:
        return None
    host, port = settings.http.listen
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/metrics"


def _samples(text: str) -> dict[str, float]:
    """The first sample of each metric name (the ones read here carry no labels)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(" ")
        name = name.split("{", 1)[0]
        try:
            values.setdefault(name, float(rest.split()[0]))
        except (ValueError, IndexError):
            continue
    return values


async def running_daemon(settings: Settings) -> RunningDaemon | None:
    """The daemon at ``http.listen``, or None when nothing (or not tuya-events) answers."""
    url = metrics_url(settings)
    if url is None:
        return None
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=TIMEOUT), trust_env=False
            ) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                return None
            text = await response.text()
    except (aiohttp.ClientError, asyncio.TimeoutError, UnicodeDecodeError):
        return None
    samples = _samples(text)
    if BUILD_INFO not in samples:  # another program on that port
        return None
    last = samples.get(LAST_MESSAGE)
    return RunningDaemon(url, samples.get(CONNECTED) == 1.0, last if last else None)
