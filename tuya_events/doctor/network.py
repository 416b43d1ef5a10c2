"""DNS, TCP and TLS, one step at a time, so a failure names the step that failed.

"Cannot connect" says little; "the name does not resolve", "the port refuses", "the
certificate is not trusted" each point at a different fix. Every probe opens a connection and
closes it again: nothing is sent beyond a TLS handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from dataclasses import dataclass


class ProbeError(Exception):
    """A step failed: ``step`` is ``dns``, ``tcp`` or ``tls``; the text says what happened."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class Reached:
    address: str  # the first address the name resolved to
    tls: bool


async def resolve(host: str, port: int, timeout: float) -> str:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
        )
    except asyncio.TimeoutError:
        raise ProbeError("dns", f"{host} did not resolve within {timeout:g}s") from None
    except OSError as exc:
        raise ProbeError("dns", f"{host} does not resolve ({exc.strerror or exc})") from None
    return str(infos[0][4][0])


def _describe(exc: OSError) -> str:
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


async def reach(
    host: str,
    port: int,
    timeout: float,
    tls: ssl.SSLContext | None = None,
) -> Reached:
    """Resolve, connect, and (with ``tls``) complete a handshake verified as ``tls`` says."""
    address = await resolve(host, port, timeout)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except asyncio.TimeoutError:
        raise ProbeError("tcp", f"{host}:{port} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise ProbeError("tcp", f"cannot connect to {host}:{port} ({_describe(exc)})") from None
    writer.close()
    await _closed(writer)
    if tls is None:
        return Reached(address, False)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=tls, server_hostname=host), timeout
        )
    except ssl.SSLCertVerificationError as exc:
        raise ProbeError(
            "tls", f"the TLS certificate of {host}:{port} is not trusted ({exc.verify_message})"
        ) from None
    except asyncio.TimeoutError:
        raise ProbeError(
            "tls", f"{host}:{port} did not complete a TLS handshake within {timeout:g}s"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, ssl.SSLError) and exc.reason else _describe(exc)
        raise ProbeError("tls", f"no TLS handshake with {host}:{port} ({reason})") from None
    writer.close()
    await _closed(writer)
    return Reached(address, True)


async def _closed(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.TimeoutError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 2.0)


def tls_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """The context a client of ours would use: the system's CAs or ``ca_file``; unverified only
    when its configuration says so."""
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
