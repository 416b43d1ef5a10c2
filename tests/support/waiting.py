"""Waiting for a condition with a deadline: in an event loop, and in plain threads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll ``condition`` every 10 ms inside the running event loop; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    detail: Callable[[], str] | None = None,
    interval: float = 0.1,
) -> None:
    """Poll ``condition`` (blocking) until it holds; after ``timeout`` seconds fail saying
    ``what`` was awaited, followed by ``detail()`` (a log tail, say) when given."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{detail() if detail else ''}")
        time.sleep(interval)
