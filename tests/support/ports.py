"""Free TCP ports on the loopback address, for every server the tests start.

Ports are drawn at random *below* the kernel's ephemeral range: a client's outgoing connection
never takes one of them, so a port stays free while a server (the broker, PostgreSQL, a daemon)
is down between a stop and a start, and two servers (or two test runs) drawing at the same time
rarely pick the same one.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
_LOWEST = 20000


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on ``host:port`` now (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM's servers do
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports that are free on ``host`` (and on all interfaces) right now."""
    ceiling = _ephemeral_floor() - 1
    candidates = random.sample(range(_LOWEST, ceiling), k=min(2000, ceiling - _LOWEST))
    chosen: list[int] = []
    for port in candidates:
        if is_free(port, host) and is_free(port, "0.0.0.0"):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise RuntimeError(f"found only {len(chosen)} free ports below {ceiling}")


def free_port() -> int:
    """One loopback port nobody listens on now (see the module's docstring for which)."""
    return free_ports(1)[0]
