"""Where the configuration sends traffic in clear or without checking certificates.

One pure function, :func:`insecure_transports`, reads the settings (and the handlers' raw
options, so nothing has to be built) and names every such place with the key to change.
``check-config`` prints the findings and the daemon logs each once at start: nobody weakens a
connection silently, and nothing else repeats them.

"Loopback" is decided on the host *as written*: a Unix socket path, ``localhost`` or a loopback
address literal. A name that happens to resolve to 127.0.0.1 today does not count, since what a
name resolves to can change under us (DNS, /etc/hosts); what is written cannot. The PostgreSQL
handler applies the same rule (:func:`postgres_needs_verified_tls`) when it connects.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tuya_events.config.settings import Settings
from tuya_events.observability.logging import get_logger

log = get_logger("tuya_events.security")

TLS_SCHEMES = frozenset({"pulsar+ssl", "https", "wss"})
PLAINTEXT_SCHEMES = frozenset({"pulsar", "http", "ws"})
# libpq's names; asyncpg also takes verify_ca / verify_full, normalised by postgres_sslmode.
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Where asyncpg connects when neither the DSN nor PGHOST names a host: all on this machine.
_POSTGRES_DEFAULT_HOSTS = ("/run/postgresql", "/var/run/postgresql", "/tmp", "localhost")
_SERVICE_HOSTS = "the hosts of its service file"

_SSLMODE_RISK = {
    "disable": "asks for plaintext (sslmode=disable)",
    "allow": "allows plaintext (sslmode=allow: TLS only if the server insists)",
    "prefer": "allows plaintext (sslmode=prefer: falls back to it, and never checks the "
    "certificate)",
    "require": "encrypts without checking the server's host name, nor its certificate unless "
    "sslrootcert is given (sslmode=require)",
    "verify-ca": "checks the certificate but not the server's host name (sslmode=verify-ca)",
}


@dataclass(frozen=True)
class Finding:
    """One weakened connection: ``where`` is the key path to change, ``what`` says the risk."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


# -- hosts ---------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether traffic to ``host``, as written, stays on this machine."""
    host = host.strip()
    if host.startswith("/"):
        return True  # a Unix socket directory or path
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def host_list(spec: str) -> list[str]:
    """``h1:6650,[::1]:6651`` -> ``["h1", "::1"]``: the hosts of a (multi-host) netloc."""
    spec = spec.rpartition("@")[2]
    hosts = []
    for item in spec.split(","):
        item = item.strip()
        if item.startswith("["):
            host = item[1:].partition("]")[0]
        elif item.startswith("/"):
            host = item  # a Unix socket directory (in a host= parameter or PGHOST)
        else:
            host = item.partition(":")[0]
        if host:
            hosts.append(unquote(host))
    return hosts


def url_hosts(url: str) -> list[str]:
    return host_list(urlsplit(url).netloc)


def _remote(hosts: list[str]) -> list[str]:
    return [host for host in hosts if not is_loopback(host)]


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


# -- PostgreSQL ------------------------------------------------------------------------------


def postgres_query(dsn: str) -> dict[str, str]:
    """The DSN's parameters; the last of a repeated one wins, as in asyncpg."""
    return dict(parse_qsl(urlsplit(dsn).query))


def postgres_sslmode(dsn: str) -> str | None:
    """The DSN's own ``sslmode`` in libpq's spelling, or None when it has none."""
    value = postgres_query(dsn).get("sslmode")
    return value.replace("_", "-") if value is not None else None


def postgres_hosts(dsn: str, environ: Mapping[str, str] = os.environ) -> list[str] | None:
    """Where asyncpg will connect, in its order of precedence: the DSN's hosts, its ``host=``
    parameter, ``PGHOST``, else this machine's default sockets. None when a service file
    names them (``service=``/``PGSERVICE``): unknown here, so treated as remote."""
    query = postgres_query(dsn)
    hosts = host_list(urlsplit(dsn).netloc) or host_list(query.get("host", ""))
    if hosts:
        return hosts
    if query.get("service") or environ.get("PGSERVICE"):
        return None
    return host_list(environ.get("PGHOST", "")) or list(_POSTGRES_DEFAULT_HOSTS)


def postgres_remote_hosts(dsn: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The hosts off this machine, for deciding and for saying which they are."""
    hosts = postgres_hosts(dsn, environ)
    return [_SERVICE_HOSTS] if hosts is None else _remote(hosts)


def postgres_needs_verified_tls(dsn: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the handler makes the connection ``verify-full`` itself: for a remote server
    whose DSN chose no ``sslmode`` (asyncpg's default, ``prefer``, would fall back to plaintext
    and send the password to whoever answers), and for ``sslmode=verify-full`` (asyncpg's
    knows no system CAs, only ``~/.postgresql/root.crt``)."""
    sslmode = postgres_sslmode(dsn)
    if sslmode is None:
        return bool(postgres_remote_hosts(dsn, environ))
    return sslmode == "verify-full"


# -- findings ----------------------------------------------------------------------------------


def _hosts_text(hosts: list[str]) -> str:
    return ", ".join(hosts)


def _tuya_findings(settings: Settings) -> Iterator[Finding]:
    tuya = settings.tuya
    websocket = tuya.transport == "websocket"
    # The message service's URL as the transport reaches it: ws:// is plaintext, wss:// TLS.
    pulsar_url = tuya.resolved_websocket_url if websocket else tuya.resolved_pulsar_url
    pulsar_key = "tuya.websocket_url" if websocket else "tuya.pulsar_url"
    openapi_url = tuya.resolved_openapi_url
    unverified = []
    if not settings.tls.verify_certificates:
        if _scheme(pulsar_url) in TLS_SCHEMES:
            unverified.append(f"the Pulsar connection ({_hosts_text(url_hosts(pulsar_url))})")
        if _scheme(openapi_url) in TLS_SCHEMES:
            unverified.append(f"the OpenAPI ({_hosts_text(url_hosts(openapi_url))})")
    if unverified:
        yield Finding(
            "tls.insecure",
            f"TLS certificate verification is OFF for {' and '.join(unverified)}: anyone on "
            "the path can pose as Tuya; never in production",
        )
    remote = _remote(url_hosts(pulsar_url))
    if _scheme(pulsar_url) in PLAINTEXT_SCHEMES and remote:
        yield Finding(
            pulsar_key,
            f"plaintext {_scheme(pulsar_url)}:// to a non-loopback host ({_hosts_text(remote)}): "
            "the login (a password derived from the access secret) crosses the network "
            "unencrypted, and with it anyone on the path can subscribe in your place",
        )
    remote = _remote(url_hosts(openapi_url))
    if _scheme(openapi_url) in PLAINTEXT_SCHEMES and remote:
        yield Finding(
            "tuya.openapi_url",
            f"plaintext http:// to the OpenAPI at a non-loopback host ({_hosts_text(remote)}): "
            "signed requests, access tokens and device commands cross the network unencrypted",
        )


Check = Callable[[str, Mapping[str, Any], Mapping[str, str]], Iterator[Finding]]


def _url_findings(
    where: str, options: Mapping[str, Any], url_key: str, verify_key: str, what: str
) -> Iterator[Finding]:
    """A handler that talks to one URL: plaintext to a remote host, or TLS unchecked."""
    url = options.get(url_key)
    if not isinstance(url, str):
        return
    scheme = _scheme(url)
    remote = _remote(url_hosts(url))
    if scheme in PLAINTEXT_SCHEMES and remote:
        yield Finding(
            f"{where}.{url_key}",
            f"{what} uses plaintext {scheme}:// to a non-loopback host ({_hosts_text(remote)}): "
            "events, and any credentials sent with them, cross the network unencrypted",
        )
    elif scheme in TLS_SCHEMES and options.get(verify_key) is False:
        yield Finding(
            f"{where}.{verify_key}",
            f"TLS certificate verification is OFF for {what} ({_hosts_text(url_hosts(url))}): "
            f"{verify_key} is false",
        )


def _webhook(
    where: str, options: Mapping[str, Any], environ: Mapping[str, str]
) -> Iterator[Finding]:
    return _url_findings(where, options, "url", "verify_tls", "the webhook")


def _pulsar_forward(
    where: str, options: Mapping[str, Any], environ: Mapping[str, str]
) -> Iterator[Finding]:
    return _url_findings(where, options, "service_url", "tls_verify", "the Pulsar forward")


def _database(
    where: str, options: Mapping[str, Any], environ: Mapping[str, str]
) -> Iterator[Finding]:
    dsn = options.get("dsn")
    if not isinstance(dsn, str):
        return
    risk = _SSLMODE_RISK.get(postgres_sslmode(dsn) or "")
    remote = postgres_remote_hosts(dsn, environ)
    if risk and remote:
        yield Finding(
            f"{where}.dsn",
            f"the PostgreSQL DSN {risk} to a remote host ({_hosts_text(remote)}): the password "
            "and the events may be read or changed on the way; use sslmode=verify-full (or "
            "leave sslmode out)",
        )


_HANDLER_CHECKS: dict[str, Check] = {
    "webhook": _webhook,
    "pulsar": _pulsar_forward,
    "database": _database,
}


def insecure_transports(
    settings: Settings, environ: Mapping[str, str] = os.environ
) -> list[Finding]:
    """Every connection the settings leave unencrypted or unverified, in file order.

    ``environ`` matters only where a client reads it too (``PGHOST`` for a DSN without host).
    """
    findings = list(_tuya_findings(settings))
    for index, handler in enumerate(settings.handlers):
        check = _HANDLER_CHECKS.get(handler.type)
        if check is not None:
            findings.extend(check(f"handlers[{index}]", handler.options, environ))
    if settings.ledger.dsn is not None:  # the shared dedupe ledger's own PostgreSQL DSN
        dsn = {"dsn": settings.ledger.dsn.get_secret_value()}
        findings.extend(_database("ledger", dsn, environ))
    return findings


def log_insecure_transports(settings: Settings) -> list[Finding]:
    """Log each finding once, at warning level (the daemon calls this at start)."""
    findings = insecure_transports(settings)
    for finding in findings:
        log.warning(finding.what, key=finding.where)
    return findings
