"""Check 7: every configured handler's target is reachable, and nothing is sent to it.

Each handler type is checked with its own options, the way it would connect: a webhook by DNS,
TCP, TLS and an ``OPTIONS`` request (which delivers nothing); a database by connecting and
reading its schema version (no migration, no write); a Pulsar forward by a topic lookup (no
producer); MQTT by a CONNECT and the broker's CONNACK, under a client id of its own so the
bridge's session is not taken over.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import aiohttp
import asyncpg
from yarl import URL

from tuya_events.config.settings import HandlerSettings, Settings
from tuya_events.config.transport_security import postgres_needs_verified_tls
from tuya_events.doctor.local_checks import writable_directory
from tuya_events.doctor.message_checks import quiet_pulsar_logger
from tuya_events.doctor.network import ProbeError, reach, tls_context
from tuya_events.doctor.openapi_checks import CONTROL
from tuya_events.doctor.report import Mark, Report, Result, failed, passed, skipped
from tuya_events.handlers.database.options import DatabaseOptions, describe
from tuya_events.handlers.database.postgres import tls_refused, verified_tls
from tuya_events.handlers.database.schema import LATEST_VERSION, SchemaTooNew, versions_table
from tuya_events.handlers.webhook import WebhookOptions
from tuya_events.observability.redact import mask_url

if TYPE_CHECKING:
    from tuya_events.handlers.pulsar_forward import PulsarForwardOptions

MAX_TIMEOUT = 10.0
MQTT_PORTS = {"mqtt": 1883, "mqtts": 8883}
CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class TargetProblem(Exception):
    def __init__(self, detail: str, fix: tuple[str, ...]) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


Probe = Callable[[dict[str, Any], str], Awaitable[str]]


class TargetChecks:
    def __init__(self, settings: Settings, report: Report) -> None:
        self.settings = settings
        self.report = report

    async def run(self) -> None:
        settings = self.settings
        for index, (name, entry) in enumerate(
            zip(settings.handler_names(), settings.handlers, strict=True)
        ):
            self.report.add(await self._check(index, name, entry))

    async def _check(self, index: int, name: str, entry: HandlerSettings) -> Result:
        check, title = f"handler:{name}", f"handler {name} ({entry.type})"
        where = f"handlers[{index}]"
        if entry.type == "log":
            return passed(check, title, "writes to the daemon's log: nothing to reach")
        if entry.type == "action":
            return self._action(check, title)
        probe = PROBES.get(entry.type)
        if probe is None:
            return skipped(check, title, f"no reachability check for handler type {entry.type}")
        try:
            detail = await probe(entry.options, where)
        except TargetProblem as problem:
            return failed(check, title, problem.detail, problem.fix)
        return passed(check, title, detail)

    def _action(self, check: str, title: str) -> Result:
        """Its target is Tuya's device control API, checked with the OpenAPI: said once."""
        control = self.report.get(CONTROL)
        if control is not None and control.mark is Mark.PASSED:
            return passed(check, title, "its target, Tuya's device control API, answered above")
        why = "its target is Tuya's device control API: see that check above"
        return skipped(check, title, why)


# -- webhook -------------------------------------------------------------------------------


async def webhook(raw: dict[str, Any], where: str) -> str:
    options = WebhookOptions.model_validate(raw)
    url = URL(options.url)
    shown = mask_url(options.url)
    secure = url.scheme == "https"
    timeout = min(options.timeout, MAX_TIMEOUT)
    context = tls_context(options.verify_tls, options.ca_file) if secure else None
    port = url.port or (443 if secure else 80)
    await _reach(url.host or "", port, timeout, context, f"{where}.url", shown)
    try:
        async with (
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False
            ) as session,
            session.options(
                options.url,
                headers=options.headers,
                ssl=context if context is not None else True,
                allow_redirects=False,
            ) as response,
        ):
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise TargetProblem(
            f"{shown}: the HTTP request failed ({type(exc).__name__}: {exc})",
            (f"check {where}.url: the receiver accepts TCP but does not speak HTTP there",),
        ) from None
    if status >= 500:
        raise TargetProblem(
            f"{shown} answered OPTIONS with HTTP {status}",
            (
                "the receiver (or a proxy in front of it) is failing: while it answers 5xx the "
                "daemon keeps the messages waiting (retry.infrastructure_max_time), then "
                "dead-letters them",
            ),
        )
    steps = "DNS, TCP, TLS" if secure else "DNS, TCP"
    note = ""
    if status in (401, 403):
        note = f"; it wants credentials for OPTIONS ({status}): check {where}.headers"
    return f"{shown}: {steps} and HTTP (OPTIONS answered {status}, nothing delivered){note}"


# -- database ------------------------------------------------------------------------------


async def database(raw: dict[str, Any], where: str) -> str:
    options = DatabaseOptions.model_validate(raw)
    if options.dsn is None:
        assert options.path is not None
        return await asyncio.to_thread(_sqlite, Path(options.path), options.table_prefix, where)
    return await _postgres(options, where)


def _version_text(version: int, where: str) -> str:
    if version > LATEST_VERSION:
        raise TargetProblem(
            str(SchemaTooNew(version)),
            (f"upgrade tuya-events, or give {where}.table_prefix a new prefix",),
        )
    if version == 0:
        return "no tables yet: the daemon creates them at start"
    if version < LATEST_VERSION:
        return f"schema version {version}: the daemon migrates it to {LATEST_VERSION} at start"
    return f"schema version {version} (current)"


def _sqlite(path: Path, prefix: str, where: str) -> str:
    problem = writable_directory(path.parent)
    if problem is not None:
        raise TargetProblem(
            f"SQLite {path}: {problem}",
            (
                f"the daemon writes {path.name} and its -wal/-shm files there: make the directory "
                f"writable for the daemon's user, or set {where}.path to a writable place",
            ),
        )
    if not path.exists():
        return f"SQLite {path}: not there yet; the daemon creates it (the directory is writable)"
    try:
        with open(path, "r+b"):
            pass
    except OSError as exc:
        raise TargetProblem(
            f"SQLite {path}: cannot be written ({exc.strerror or exc})",
            (f"make {path} writable for the daemon's user",),
        ) from None
    try:
        connection = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=5)
        try:
            version = _sqlite_version(connection, prefix)
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise TargetProblem(
            f"SQLite {path}: cannot be read ({exc})",
            (f"{where}.path must be a SQLite database of tuya-events (or a new file)",),
        ) from None
    return f"SQLite {path}: writable; {_version_text(version, where)}"


def _sqlite_version(connection: sqlite3.Connection, prefix: str) -> int:
    table = versions_table(prefix)
    known = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if known is None:
        return 0
    row = connection.execute(f"SELECT max(version) FROM {table}").fetchone()
    return int(row[0] or 0)


async def _postgres(options: DatabaseOptions, where: str) -> str:
    assert options.dsn is not None
    dsn = options.dsn.get_secret_value()
    target = describe(options)
    shown = f"PostgreSQL {target['host']}:{target['port'] or 5432}/{target['database'] or ''}"
    extra: dict[str, Any] = {}
    if postgres_needs_verified_tls(dsn):
        extra["ssl"] = verified_tls(dsn)
    try:
        connection = await asyncpg.connect(dsn, timeout=min(options.connect_timeout, 30), **extra)
    except Exception as exc:
        raise _postgres_problem(exc, shown, where) from None
    try:
        table = versions_table(options.table_prefix)
        found = await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
        version = 0
        if found:
            version = int(await connection.fetchval(f"SELECT max(version) FROM {table}") or 0)
    finally:
        await connection.close()
    return f"{shown}: connected; {_version_text(version, where)}"


def _postgres_problem(exc: BaseException, shown: str, where: str) -> TargetProblem:
    if tls_refused(exc):
        reason = getattr(exc, "verify_message", None) or str(exc)
        return TargetProblem(
            f"{shown}: TLS refused ({reason})",
            (f"give the server's CA as sslrootcert=PATH in {where}.dsn, or fix its TLS set-up",),
        )
    refused = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
    if isinstance(exc, refused):
        return TargetProblem(
            f"{shown}: the login was refused ({exc})",
            (f"check the user and password in {where}.dsn (or dsn_file)",),
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return TargetProblem(
            f"{shown}: {exc}", (f"create the database, or name an existing one in {where}.dsn",)
        )
    if isinstance(exc, asyncio.TimeoutError):
        detail = f"{shown}: no answer within the connect timeout"
    elif isinstance(exc, OSError):
        detail = f"{shown}: cannot connect ({exc.strerror or exc})"
    else:
        detail = f"{shown}: {type(exc).__name__}: {exc}"
    return TargetProblem(
        detail,
        (
            f"start PostgreSQL, or check the host and port in {where}.dsn; while it is down the "
            "daemon keeps the messages waiting (retry.infrastructure_max_time)",
        ),
    )


# -- Pulsar forward ------------------------------------------------------------------------


async def pulsar_forward(raw: dict[str, Any], where: str) -> str:
    import pulsar  # here: a WebSocket-only install has no pulsar-client

    from tuya_events.handlers.pulsar_forward import PulsarForwardOptions

    options = PulsarForwardOptions.model_validate(raw)
    parsed = urlsplit(options.service_url)
    secure = parsed.scheme == "pulsar+ssl"
    timeout = min(options.send_timeout, MAX_TIMEOUT)
    context = tls_context(options.tls_verify, options.ca_file) if secure else None
    host, port = parsed.hostname or "", parsed.port or (6651 if secure else 6650)
    await _reach(host, port, timeout, context, f"{where}.service_url", options.service_url)
    try:
        await asyncio.to_thread(_lookup, options, max(1, round(timeout)))
    except pulsar.PulsarException as exc:
        raise TargetProblem(
            f"{options.service_url} is reachable but refused the lookup of {options.topic} "
            f"({type(exc).__name__}: {exc})",
            (
                f"check {where}.token (a token the cluster accepts, or token_file) and that it "
                f"may produce to {options.topic}",
            ),
        ) from None
    return f"{options.service_url}: logged in, topic {options.topic} known (no producer made)"


def _lookup(options: PulsarForwardOptions, timeout: int) -> None:
    import pulsar

    client_options: dict[str, Any] = {
        "operation_timeout_seconds": timeout,
        "logger": quiet_pulsar_logger(),
    }
    if options.token:
        client_options["authentication"] = pulsar.AuthenticationToken(options.token)
    if urlsplit(options.service_url).scheme == "pulsar+ssl":
        client_options["use_tls"] = True
        client_options["tls_allow_insecure_connection"] = not options.tls_verify
        client_options["tls_validate_hostname"] = options.tls_verify
        if options.ca_file:
            client_options["tls_trust_certs_file_path"] = options.ca_file
    client = pulsar.Client(options.service_url, **client_options)
    try:
        client.get_topic_partitions(options.topic)
    finally:
        client.close()


# -- MQTT ----------------------------------------------------------------------------------


async def mqtt(raw: Mapping[str, Any], where: str) -> str:
    """DNS, TCP, TLS, then an MQTT 3.1.1 CONNECT and the broker's CONNACK. The options are read
    as the MQTT handler takes them (``url``, ``username``, ``password``, ``tls``)."""
    url = raw.get("url")
    parsed = urlsplit(url) if isinstance(url, str) else None
    if url is None or parsed is None or parsed.scheme not in MQTT_PORTS or not parsed.hostname:
        raise TargetProblem(f"{where}.url is not an mqtt:// or mqtts:// URL", (f"set {where}.url",))
    shown = mask_url(url)
    secure = parsed.scheme == "mqtts"
    host, port = parsed.hostname, parsed.port or MQTT_PORTS[parsed.scheme]
    context = _mqtt_tls(raw.get("tls")) if secure else None
    await _reach(host, port, MAX_TIMEOUT, context, f"{where}.url", shown)
    username, password = _text(raw.get("username")), _text(raw.get("password"))
    code = await mqtt_connack(host, port, context, username, password, MAX_TIMEOUT)
    if code != 0:
        raise TargetProblem(
            f"{shown}: the broker refused the connection "
            f"(CONNACK {code}: {CONNACK_CODES.get(code, 'refused')})",
            (f"check {where}.username and password (or password_file) and the broker's ACL",),
        )
    return f"{shown}: CONNECT accepted (CONNACK 0), disconnected at once"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _mqtt_tls(options: Any) -> ssl.SSLContext:
    tls = options if isinstance(options, Mapping) else {}
    context = tls_context(tls.get("verify") is not False, _text(tls.get("ca_file")))
    cert = _text(tls.get("cert_file"))
    if cert:
        context.load_cert_chain(cert, _text(tls.get("key_file")))
    return context


def _mqtt_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return len(data).to_bytes(2, "big") + data


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        length, digit = divmod(length, 128)
        out.append(digit | (0x80 if length else 0))
        if not length:
            return bytes(out)


def connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    """MQTT 3.1.1 CONNECT: clean session, keep-alive 10 s."""
    flags = 0x02
    payload = _mqtt_string(client_id)
    if username is not None:
        flags |= 0x80
        payload += _mqtt_string(username)
        if password is not None:
            flags |= 0x40
            payload += _mqtt_string(password)
    body = _mqtt_string("MQTT") + bytes([4, flags]) + (10).to_bytes(2, "big") + payload
    return b"\x10" + _remaining_length(len(body)) + body


async def mqtt_connack(
    host: str,
    port: int,
    context: ssl.SSLContext | None,
    username: str | None,
    password: str | None,
    timeout: float,
) -> int:
    """The CONNACK return code the broker answers (0: accepted); DISCONNECT follows."""
    client_id = f"tuya-events-doctor-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if context else None
            ),
            timeout,
        )
    except (OSError, asyncio.TimeoutError) as exc:
        raise TargetProblem(
            f"{host}:{port}: cannot connect ({type(exc).__name__})", ("start the MQTT broker",)
        ) from None
    try:
        writer.write(connect_packet(client_id, username, password))
        await writer.drain()
        answer = await asyncio.wait_for(reader.readexactly(4), timeout)
        if answer[0] != 0x20 or answer[1] != 0x02:
            raise TargetProblem(
                f"{host}:{port} did not answer as an MQTT broker", ("check the port",)
            )
        if answer[3] == 0:
            writer.write(b"\xe0\x00")  # DISCONNECT
            await writer.drain()
        return answer[3]
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
        raise TargetProblem(
            f"{host}:{port}: no CONNACK ({type(exc).__name__})", ("check the port and TLS",)
        ) from None
    finally:
        writer.close()


# -- shared --------------------------------------------------------------------------------


async def _reach(
    host: str, port: int, timeout: float, context: ssl.SSLContext | None, where: str, shown: str
) -> None:
    try:
        await reach(host, port, timeout, context)
    except ProbeError as problem:
        raise TargetProblem(f"{shown}: {problem}", _reach_fix(problem, where)) from None


def _reach_fix(problem: ProbeError, where: str) -> tuple[str, ...]:
    if problem.step == "dns":
        return (f"check the host name in {where} and this machine's DNS",)
    if problem.step == "tls":
        return (
            f"trust the target's CA ({where}.ca_file) or fix its certificate (the name it is "
            "for, its expiry)",
        )
    return (
        f"start the target, or check the host and port in {where} and any firewall between; "
        "while it is down the daemon keeps the messages waiting "
        "(retry.infrastructure_max_time), then dead-letters them",
    )


PROBES: dict[str, Probe] = {
    "webhook": webhook,
    "database": database,
    "pulsar": pulsar_forward,
    "mqtt": mqtt,
}
