"""TLS and plaintext (issue 12): verified TLS to a remote PostgreSQL unless the DSN says
otherwise, and every weakened connection named once, at start and by ``check-config``.

The PostgreSQL server here is a stand-in that speaks only the start of the wire protocol
(the SSLRequest, the StartupMessage, a cleartext password request), because what matters is
what a client sends *before* it knows whom it talks to. It listens on the address this
machine's own host name resolves to: the name is not a loopback literal, so the handler treats
it as a remote server, yet the test never leaves the machine.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import structlog
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tests.support.events import T0, status
from tests.support.pki import Pki, make_pki
from tests.support.settings import routes_of
from tuya_events.cli.main import main
from tuya_events.config import ConfigError
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.settings import Settings
from tuya_events.config.transport_security import (
    insecure_transports,
    is_loopback,
    log_insecure_transports,
    postgres_needs_verified_tls,
)
from tuya_events.handlers.base import HandlerError
from tuya_events.handlers.database import DatabaseHandler
from tuya_events.handlers.database.errors import UNAVAILABLE

ACCESS_ID = "a" * 20
ACCESS_SECRET = "S3cretAccessKey-0123456789abcdef"
PASSWORD = "pg-Pa55w0rd-never-seen"
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
AUTH_CLEARTEXT = b"R" + struct.pack("!ii", 8, 3)


def settings_with(*handlers: dict[str, Any], **sections: Any) -> Settings:
    tuya = {"access_id": ACCESS_ID, "access_secret": ACCESS_SECRET, "region": "eu"}
    tuya.update(sections.pop("tuya", {}))
    named = [{"name": f"h{index}", **handler} for index, handler in enumerate(handlers)]
    return settings_from_mapping({"tuya": tuya, "handlers": named, **sections}, {})


# --- a PostgreSQL stand-in on a name that is not loopback ------------------------------------


def remote_looking_host() -> tuple[str, str]:
    """This machine's host name and the address it resolves to (127.0.1.1 on Debian, the
    container's address in Docker, 127.0.0.1 on some VMs): reachable, and not a literal."""
    name = socket.gethostname()
    if is_loopback(name):
        pytest.skip(f"the host name {name!r} is itself a loopback name")
    try:
        address = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except OSError as exc:
        pytest.skip(f"the host name {name!r} does not resolve: {exc}")
    return name, address


def _error_response(code: str, message: str) -> bytes:
    body = b"SFATAL\0C" + code.encode() + b"\0M" + message.encode() + b"\0\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


def _read_message(conn: socket.socket, typed: bool) -> bytes:
    """One protocol message as it came (``typed``: with its leading type byte)."""
    head = _read_exact(conn, 5 if typed else 4)
    length = struct.unpack("!i", head[-4:])[0]
    return head + _read_exact(conn, length - 4)


def _read_exact(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise EOFError(data)
        data += chunk
    return data


@dataclass
class Seen:
    """What one client connection did."""

    ssl_request: bool = False
    tls: bool = False
    handshake_error: str | None = None
    sent: bytes = b""  # every byte after the SSL answer (from the start without SSLRequest)


@dataclass
class FakePostgres:
    """Answers ``N`` to the SSLRequest (or ``S`` and a handshake when given a certificate),
    then asks for the password in clear and records every byte the client sends."""

    address: str
    tls: ssl.SSLContext | None = None
    connections: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = socket.create_server((self.address, 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="fake-postgres", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Waits for the conversation in progress: what the client sent is then all recorded."""
        self._stop.set()
        self._thread.join(10)
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            seen = Seen()
            self.connections.append(seen)
            with conn:
                conn.settimeout(5)
                self._converse(conn, seen)

    def _converse(self, conn: socket.socket, seen: Seen) -> None:
        try:
            first = _read_exact(conn, 8)
            if first == SSL_REQUEST:
                seen.ssl_request = True
                conn = self._answer_ssl(conn, seen)
                if conn is None:
                    return
            else:
                seen.sent = first
            # The rest of the StartupMessage, then the password the client sends when asked.
            if not seen.sent:
                seen.sent = _read_exact(conn, 4)
            length = struct.unpack("!i", seen.sent[:4])[0]
            seen.sent += _read_exact(conn, length - len(seen.sent))
            conn.sendall(AUTH_CLEARTEXT)
            seen.sent += _read_message(conn, typed=True)
            conn.sendall(_error_response("28P01", "password authentication failed (fake)"))
        except (EOFError, OSError):
            return

    def _answer_ssl(self, conn: socket.socket, seen: Seen) -> socket.socket | None:
        if self.tls is None:
            conn.sendall(b"N")
            return conn
        conn.sendall(b"S")
        try:
            wrapped = self.tls.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            seen.handshake_error = str(exc)
            return None
        seen.tls = True
        return wrapped


@pytest.fixture
def fake_host() -> tuple[str, str]:
    return remote_looking_host()


@pytest.fixture
def plaintext_postgres(fake_host: tuple[str, str]) -> Iterator[FakePostgres]:
    server = FakePostgres(fake_host[1])
    yield server
    server.close()


def database_handler(dsn: str) -> DatabaseHandler:
    settings = settings_with({"type": "log"}, {"type": "database", "dsn": dsn})
    route = routes_of(settings)[1]
    assert isinstance(route.handler, DatabaseHandler)
    return route.handler


def start_then_handle(handler: DatabaseHandler) -> tuple[BaseException | None, BaseException]:
    """Start (as the daemon does), then write one event (as the pipeline does mid-run)."""

    async def scenario() -> tuple[BaseException | None, BaseException]:
        started: BaseException | None = None
        try:
            await handler.start()
        except ConfigError as exc:
            started = exc
        try:
            with pytest.raises(HandlerError) as caught:
                await handler.handle(*status("dev-a", 1, True, T0))
        finally:
            await handler.stop()
        return started, caught.value

    return asyncio.run(scenario())


# --- the downgrade is refused -----------------------------------------------------------------


def test_a_remote_server_that_refuses_tls_never_gets_the_startup_message_or_the_password(
    fake_host: tuple[str, str], plaintext_postgres: FakePostgres
) -> None:
    name, _ = fake_host
    dsn = f"postgresql://tuya:{PASSWORD}@{name}:{plaintext_postgres.port}/events"
    started, mid_run = start_then_handle(database_handler(dsn))
    plaintext_postgres.close()

    assert isinstance(started, ConfigError)  # exit 78 at start, naming the key
    ((key, problem),) = started.problems
    assert key == "handlers[1].dsn"
    assert "refused TLS" in problem and "sslmode=disable" in problem and name in problem
    assert PASSWORD not in problem
    # Mid-run (the server changed, or someone is in the way) it is an outage: nothing is lost.
    assert isinstance(mid_run, HandlerError) and mid_run.reason == UNAVAILABLE
    assert mid_run.infrastructure and PASSWORD not in mid_run.message
    connections = plaintext_postgres.connections
    assert len(connections) >= 2 and all(seen.ssl_request for seen in connections)
    assert [seen.sent for seen in connections] == [b""] * len(connections)


def test_a_loopback_literal_keeps_asyncpgs_default() -> None:
    """Traffic to 127.0.0.1 never leaves the machine: today's ``prefer`` is kept."""
    server = FakePostgres("127.0.0.1")
    try:
        dsn = f"postgresql://tuya:{PASSWORD}@127.0.0.1:{server.port}/events"
        started, mid_run = start_then_handle(database_handler(dsn))
    finally:
        server.close()
    assert started is None  # the fake refused the password: an outage, not a setup error
    assert isinstance(mid_run, HandlerError) and mid_run.infrastructure
    first = server.connections[0]
    assert first.ssl_request and b"user\0tuya\0" in first.sent


def test_sslmode_disable_to_a_remote_host_is_plaintext_and_said_once_at_start(
    fake_host: tuple[str, str], plaintext_postgres: FakePostgres
) -> None:
    name, _ = fake_host
    dsn = f"postgresql://tuya:{PASSWORD}@{name}:{plaintext_postgres.port}/events?sslmode=disable"
    settings = settings_with({"type": "database", "dsn": dsn})
    with structlog.testing.capture_logs() as logs:
        findings = log_insecure_transports(settings)
    started, _ = start_then_handle(database_handler(dsn))
    plaintext_postgres.close()

    assert started is None
    first = plaintext_postgres.connections[0]
    assert not first.ssl_request and b"user\0tuya\0" in first.sent
    assert PASSWORD.encode() in first.sent  # what the warning is about: it went in clear
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [(entry["key"], entry["event"]) for entry in warnings] == [
        (finding.where, finding.what) for finding in findings
    ]
    (entry,) = warnings
    assert entry["key"] == "handlers[0].dsn" and "sslmode=disable" in entry["event"]
    assert name in entry["event"] and PASSWORD not in str(entry)


# --- verified TLS by default: certificate and host name -------------------------------------


def server_tls(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    return context


@pytest.mark.parametrize(
    "query",
    ["?sslrootcert={ca}", "?sslmode=verify-full&sslrootcert={ca}"],
    ids=["default", "asked"],
)
def test_a_remote_server_gets_verified_tls_with_the_dsns_ca(
    query: str, fake_host: tuple[str, str], tmp_path: Path
) -> None:
    name, address = fake_host
    pki = make_pki(tmp_path, name, "good")
    server = FakePostgres(address, server_tls(pki))
    try:
        dsn = f"postgresql://tuya:{PASSWORD}@{name}:{server.port}/events" + query.format(ca=pki.ca)
        started, _ = start_then_handle(database_handler(dsn))
    finally:
        server.close()
    assert started is None  # TLS worked; the fake then refused the password (an outage)
    first = server.connections[0]
    assert first.ssl_request and first.tls and first.handshake_error is None
    assert b"user\0tuya\0" in first.sent  # the StartupMessage came inside TLS only


# (what is wrong, the name the presented certificate is for, what the DSN adds: {signer} is
# the CA that signed it, {unrelated} another one)
BAD_CERTIFICATES = [
    ("another CA signed it", None, "?sslrootcert={unrelated}"),
    ("the system CAs do not know it", None, ""),
    ("sslrootcert=system", None, "?sslrootcert=system"),
    ("sslmode=verify-full without a CA", None, "?sslmode=verify-full"),
    ("sslmode=verify-full, sslrootcert=system", None, "?sslmode=verify-full&sslrootcert=system"),
    ("it is for another host name", "elsewhere.invalid", "?sslrootcert={signer}"),
]


@pytest.mark.parametrize(
    ("cert_host", "query"), [pytest.param(*case[1:], id=case[0]) for case in BAD_CERTIFICATES]
)
def test_a_certificate_that_fails_verification_stops_the_start(
    cert_host: str | None, query: str, fake_host: tuple[str, str], tmp_path: Path
) -> None:
    name, address = fake_host
    presented = make_pki(tmp_path, cert_host or name, "presented")
    unrelated = make_pki(tmp_path, name, "unrelated")
    query = query.format(signer=presented.ca, unrelated=unrelated.ca)
    server = FakePostgres(address, server_tls(presented))
    try:
        dsn = f"postgresql://tuya:{PASSWORD}@{name}:{server.port}/events"
        started, _ = start_then_handle(database_handler(dsn + query))
    finally:
        server.close()
    assert isinstance(started, ConfigError)
    ((key, problem),) = started.problems
    assert key == "handlers[1].dsn" and "could not be verified" in problem
    assert "sslrootcert" in problem and PASSWORD not in problem
    assert server.connections and all(not seen.tls for seen in server.connections)
    assert all(seen.sent == b"" for seen in server.connections)


def test_tls_problems_in_the_dsn_are_configuration_errors_naming_the_key(tmp_path: Path) -> None:
    bad = [
        {"type": "database", "dsn": f"postgresql://u:{PASSWORD}@db.example/x?sslmode=Require"},
        {"type": "database", "dsn": f"postgresql://u:{PASSWORD}@db.example/x?sslrootcert=/no"},
        {"type": "database", "dsn": f"postgresql://u:{PASSWORD}@db.example/x?sslcert=/nope"},
        {
            "type": "database",
            "dsn": f"postgresql://u:{PASSWORD}@db.example/x?sslmode=require&sslrootcert=system",
        },
    ]
    settings = settings_with(*bad)
    with pytest.raises(ConfigError) as caught:
        routes_of(settings)
    problems = dict(caught.value.problems)
    assert "sslmode must be one of" in problems.pop("handlers[0].dsn")
    assert "sslrootcert: /no is not a file" in problems.pop("handlers[1].dsn")
    assert "sslcert: /nope is not a file" in problems.pop("handlers[2].dsn")
    assert "sslrootcert=system needs sslmode=verify-full" in problems.pop("handlers[3].dsn")
    assert problems == {}
    assert PASSWORD not in caught.value.render()


# --- every weakened connection, named by its key ---------------------------------------------

PG = f"postgresql://tuya:{PASSWORD}@db.example.com:5432/events"
FINDING_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("defaults: nothing to say", {}, []),
    (
        "tls.insecure: the Pulsar connection and the OpenAPI",
        {"tls": {"insecure": True}},
        [
            (
                "tls.insecure",
                "verification is OFF for the Pulsar connection (mqe.tuyaeu.com) and "
                "the OpenAPI (openapi.tuyaeu.com)",
            )
        ],
    ),
    (
        "tls.verify false needs insecure, and says the same",
        {"tls": {"verify": False, "insecure": True}},
        [("tls.insecure", "verification is OFF")],
    ),
    (
        "insecure with plaintext Pulsar: only the OpenAPI is unverified",
        {"tls": {"insecure": True}, "tuya": {"pulsar_url": "pulsar://127.0.0.1:6650"}},
        [("tls.insecure", "verification is OFF for the OpenAPI (openapi.tuyaeu.com):")],
    ),
    (
        "insecure with nothing over TLS: nothing is unverified",
        {
            "tls": {"insecure": True},
            "tuya": {"pulsar_url": "pulsar://localhost:6650", "openapi_url": "http://[::1]:8080"},
        },
        [],
    ),
    (
        "plaintext pulsar:// to a remote broker",
        {"tuya": {"pulsar_url": "pulsar://broker.example.com:6650"}},
        [("tuya.pulsar_url", "plaintext pulsar:// to a non-loopback host (broker.example.com)")],
    ),
    (
        "one remote host in a multi-host pulsar:// URL is enough",
        {"tuya": {"pulsar_url": "pulsar://127.0.0.1:6650,10.0.0.7:6650"}},
        [("tuya.pulsar_url", "(10.0.0.7)")],
    ),
    *(
        (f"plaintext to {host} stays on this machine", {"tuya": {"pulsar_url": url}}, [])
        for host, url in [
            ("localhost", "pulsar://localhost:6650"),
            ("127.0.0.1", "pulsar://127.0.0.1:6650"),
            ("127.8.9.10", "pulsar://127.8.9.10:6650"),
            ("::1", "pulsar://[::1]:6650"),
            ("LOCALHOST.", "pulsar://LOCALHOST.:6650"),
        ]
    ),
    (
        "plaintext http:// OpenAPI",
        {"tuya": {"openapi_url": "http://openapi.example.com"}},
        [("tuya.openapi_url", "plaintext http:// to the OpenAPI at a non-loopback host")],
    ),
    (
        "plaintext webhook to a remote host, credentials in its URL not shown",
        {"handlers": [{"type": "webhook", "url": f"http://user:{PASSWORD}@hooks.example.com/t"}]},
        [
            (
                "handlers[0].url",
                "the webhook uses plaintext http:// to a non-loopback host (hooks.example.com)",
            )
        ],
    ),
    (
        "plaintext webhook on loopback",
        {"handlers": [{"type": "webhook", "url": "http://127.0.0.1:8080/t"}]},
        [],
    ),
    (
        "webhook verify_tls false",
        {"handlers": [{"type": "webhook", "url": "https://h.example/t", "verify_tls": False}]},
        [("handlers[0].verify_tls", "verification is OFF for the webhook (h.example)")],
    ),
    (
        "webhook verify_tls false over plaintext: the plaintext is what matters",
        {"handlers": [{"type": "webhook", "url": "http://h.example/t", "verify_tls": False}]},
        [("handlers[0].url", "plaintext http://")],
    ),
    (
        "plaintext Pulsar forward to a remote cluster",
        {"handlers": [{"type": "pulsar", "service_url": "pulsar://p.example:6650", "topic": "t"}]},
        [("handlers[0].service_url", "the Pulsar forward uses plaintext pulsar://")],
    ),
    (
        "Pulsar forward tls_verify false",
        {
            "handlers": [
                {
                    "type": "pulsar",
                    "service_url": "pulsar+ssl://p.example:6651",
                    "topic": "t",
                    "tls_verify": False,
                }
            ]
        },
        [("handlers[0].tls_verify", "verification is OFF for the Pulsar forward (p.example)")],
    ),
    *(
        (
            f"PostgreSQL sslmode={mode} to a remote host",
            {"handlers": [{"type": "database", "dsn": f"{PG}?sslmode={mode}"}]},
            [("handlers[0].dsn", f"sslmode={mode.replace('_', '-')}")],
        )
        for mode in ("disable", "allow", "prefer", "require", "verify-ca", "verify_ca")
    ),
    *(
        (
            f"PostgreSQL {name}: verified",
            {"handlers": [{"type": "database", "dsn": dsn}]},
            [],
        )
        for name, dsn in [
            ("without sslmode (verified by default)", PG),
            ("sslmode=verify-full", f"{PG}?sslmode=verify-full"),
            ("sslmode=verify_full", f"{PG}?sslmode=verify_full"),
        ]
    ),
    *(
        (
            f"PostgreSQL sslmode=disable on this machine: {name}",
            {"handlers": [{"type": "database", "dsn": dsn}]},
            [],
        )
        for name, dsn in [
            ("localhost", f"postgresql://u:{PASSWORD}@localhost/db?sslmode=disable"),
            ("127.0.0.1", f"postgresql://u:{PASSWORD}@127.0.0.1:5432/db?sslmode=disable"),
            ("[::1]", f"postgresql://u:{PASSWORD}@[::1]:5432/db?sslmode=disable"),
            ("a socket in the netloc", "postgresql://u@%2Frun%2Fpostgresql/db?sslmode=disable"),
            ("a socket in host=", "postgresql://u@/db?host=/run/postgresql&sslmode=disable"),
            ("no host at all: asyncpg's local defaults", "postgresql:///db?sslmode=disable"),
        ]
    ),
    (
        "PostgreSQL: one remote host among local ones",
        {
            "handlers": [
                {"type": "database", "dsn": "postgresql://u@localhost,db2.example/d?sslmode=prefer"}
            ]
        },
        [("handlers[0].dsn", "remote host (db2.example)")],
    ),
    (
        "PostgreSQL: hosts from a service file are unknown, so remote",
        {"handlers": [{"type": "database", "dsn": "postgresql:///d?service=x&sslmode=allow"}]},
        [("handlers[0].dsn", "the hosts of its service file")],
    ),
    (
        "SQLite: nothing on the network",
        {"handlers": [{"type": "database", "path": "events.db"}]},
        [],
    ),
    (
        "several at once, each with its own handler index, in file order",
        {
            "tls": {"insecure": True},
            "handlers": [
                {"type": "log"},
                {"type": "database", "dsn": f"{PG}?sslmode=disable"},
                {"type": "webhook", "url": "https://h.example/t"},
                {"type": "webhook", "url": "http://h.example/t"},
            ],
        },
        [
            ("tls.insecure", "verification is OFF"),
            ("handlers[1].dsn", "asks for plaintext (sslmode=disable)"),
            ("handlers[3].url", "plaintext http://"),
        ],
    ),
]


def _settings_from_case(case: dict[str, Any]) -> Settings:
    sections = {key: value for key, value in case.items() if key != "handlers"}
    return settings_with(*case.get("handlers", [{"type": "log"}]), **sections)


@pytest.mark.parametrize(
    ("config", "expected"),
    [pytest.param(config, expected, id=name) for name, config, expected in FINDING_CASES],
)
def test_every_weakened_connection_is_found_by_its_key(
    config: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    settings = _settings_from_case(config)
    routes_of(settings)  # the case is a valid config
    findings = insecure_transports(settings, environ={})
    assert [finding.where for finding in findings] == [where for where, _ in expected]
    for finding, (_, phrase) in zip(findings, expected, strict=True):
        assert phrase in finding.what, finding
        assert PASSWORD not in str(finding) and ACCESS_SECRET not in str(finding)


def test_a_dsn_without_host_follows_pghost_like_asyncpg_does() -> None:
    settings = settings_with({"type": "database", "dsn": "postgresql:///d?sslmode=disable"})
    (finding,) = insecure_transports(settings, environ={"PGHOST": "db.example.com"})
    assert finding.where == "handlers[0].dsn" and "(db.example.com)" in finding.what
    assert insecure_transports(settings, environ={"PGHOST": "/run/postgresql"}) == []
    assert postgres_needs_verified_tls("postgresql:///d", {"PGHOST": "db.example.com"})
    assert not postgres_needs_verified_tls("postgresql:///d", {})


# --- the rule for "loopback", as properties ----------------------------------------------------


@given(st.integers(0, 2**24 - 1))
def test_every_127_address_and_its_ipv6_mapped_form_is_loopback(offset: int) -> None:
    address = ipaddress.IPv4Address(int(ipaddress.IPv4Address("127.0.0.0")) + offset)
    assert is_loopback(str(address))
    assert is_loopback(f"[::ffff:{address}]")
    dsn = f"postgresql://u:p@{address}:5432/d"
    assert not postgres_needs_verified_tls(dsn, {})


@given(st.ip_addresses())
def test_no_other_address_is_loopback(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    mapped = getattr(address, "ipv4_mapped", None)
    expected = address.is_loopback or bool(mapped and mapped.is_loopback)
    assert is_loopback(str(address)) is expected
    host = f"[{address}]" if address.version == 6 else str(address)
    assert postgres_needs_verified_tls(f"postgresql://u:p@{host}:5432/d", {}) is not expected


@given(st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True))
def test_a_name_is_never_loopback_except_localhost(name: str) -> None:
    """Even one that resolves to 127.0.0.1 today: /etc/hosts and DNS can change."""
    assert is_loopback(name) is (name == "localhost")


@given(
    tail=st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=8),
    mode=st.sampled_from(["disable", "allow", "prefer", "require", "verify-ca"]),
)
def test_findings_never_carry_a_secret_in_any_encoding(tail: str, mode: str) -> None:
    secret = f"Zq9{tail}"
    settings = settings_with(
        {"type": "database", "dsn": f"postgresql://u:{secret}@db.example/x?sslmode={mode}"},
        {"type": "webhook", "url": f"http://u:{secret}@h.example/t?token={secret}"},
        {"type": "pulsar", "service_url": "pulsar://p.example:6650", "topic": "t", "token": secret},
        tls={"insecure": True},
        tuya={"access_secret": f"{secret:x<32}"},
    )
    text = "\n".join(str(finding) for finding in insecure_transports(settings, environ={}))
    assert len(text.splitlines()) == 4
    for value in (secret, f"{secret:x<32}"):
        encoded = value.encode()
        for form in (
            value,
            quote(value, safe=""),
            base64.b64encode(encoded).decode(),
            base64.urlsafe_b64encode(encoded).decode().rstrip("="),
            encoded.hex(),
        ):
            assert form not in text


# --- check-config --------------------------------------------------------------------------


def write_config(path: Path, tree: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(tree))
    return path


def insecure_tree() -> dict[str, Any]:
    return {
        "tuya": {"access_id": ACCESS_ID, "access_secret": ACCESS_SECRET, "region": "eu"},
        "tls": {"insecure": True},
        "handlers": [
            {"type": "database", "dsn": f"{PG}?sslmode=prefer"},
            {"type": "webhook", "url": "http://hooks.example.com/t"},
        ],
    }


def test_check_config_warns_on_stderr_and_keeps_stdout_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "c.yaml", insecure_tree())
    assert main(["check-config", "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    rendered = yaml.safe_load(out)
    assert rendered["tls"]["insecure"] is True and len(rendered["handlers"]) == 2
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    expected = insecure_transports(settings_from_mapping(insecure_tree(), {}))
    assert warnings == [f"warning: {finding}" for finding in expected]
    assert [line.split(":")[1].strip() for line in warnings] == [
        "tls.insecure",
        "handlers[0].dsn",
        "handlers[1].url",
    ]
    assert "configuration is valid" in err
    for secret in (PASSWORD, ACCESS_SECRET):
        assert secret not in out and secret not in err


def test_check_config_quiet_still_warns_and_a_safe_config_says_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "c.yaml", insecure_tree())
    assert main(["check-config", "-q", "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err.count("warning: ") == 3

    safe = insecure_tree()
    safe["tls"] = {}
    safe["handlers"] = [
        {"type": "database", "dsn": PG},
        {"type": "webhook", "url": "https://hooks.example.com/t"},
    ]
    assert main(["check-config", "-c", str(write_config(tmp_path / "safe.yaml", safe))]) == 0
    _, err = capsys.readouterr()
    assert "warning" not in err


def test_the_daemon_says_each_finding_once_at_start(tmp_path: Path) -> None:
    from tests.pipeline_support import Harness

    settings = settings_from_mapping(
        {
            "tuya": {"access_id": ACCESS_ID, "access_secret": ACCESS_SECRET, "region": "eu"},
            "tls": {"insecure": True},
            "http": {"enabled": False},
            "dead_letter": {"path": str(tmp_path / "dead-letters.sqlite3")},
            "handlers": [{"type": "webhook", "url": "http://hooks.example.com/t"}],
        },
        {},
    )
    routes = routes_of(settings)

    async def scenario() -> list[dict[str, Any]]:
        with structlog.testing.capture_logs() as logs:
            async with Harness(settings, routes) as harness:
                assert await harness.stop() == 0
        return logs

    logs = asyncio.run(scenario())
    said = [(entry["key"], entry["event"]) for entry in logs if "key" in entry]
    assert said == [(f.where, f.what) for f in insecure_transports(settings)]
    assert [key for key, _ in said] == ["tls.insecure", "handlers[0].url"]
    assert all(e["log_level"] == "warning" for e in logs if "key" in e)
    assert not any(ACCESS_SECRET in str(entry) for entry in logs)


def test_a_plaintext_websocket_url_to_a_remote_host_is_said_loudly() -> None:
    from tuya_events.config.loader import settings_from_mapping
    from tuya_events.config.transport_security import insecure_transports

    def findings(url: str) -> list[str]:
        settings = settings_from_mapping(
            {
                "tuya": {
                    "access_id": "a" * 20,
                    "access_secret": "b" * 32,
                    "region": "eu",
                    "transport": "websocket",
                    "websocket_url": url,
                },
                "handlers": [{"type": "log"}],
            }
        )
        return [finding.where for finding in insecure_transports(settings, {})]

    assert findings("ws://broker.example.com:8080/") == ["tuya.websocket_url"]
    assert findings("ws://127.0.0.1:8080/") == []
    assert findings("wss://mqe.tuyaeu.com:8285/") == []
