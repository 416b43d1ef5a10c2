"""Checks 2-4: the clock, the key pair and its data center, the project and its cloud services.

A handful of calls whatever the project's size: one token call (it answers ``t``, so it checks
the clock too), one per other data center only when the key pair is refused, the first page of
the device listing, and one call per cloud service the configuration needs, about the first
device listed. The token call is made by hand (signed by the client's own signer) because the
client keeps ``t`` to itself; the token it returns is handed to the client, so the business
calls cost no second token call.

Getting a token replaces the one a running daemon holds for the same key pair (Tuya keeps one
per key pair): the daemon gets 1011 on its next call, fetches a new token and repeats the call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import orjson

from tuya_events.catalogue.directory import Directory
from tuya_events.config.settings import Settings
from tuya_events.doctor import fixes
from tuya_events.doctor.report import Report, Result, failed, format_duration, passed, skipped
from tuya_events.observability.redact import REDACTOR
from tuya_events.openapi.client import Credentials, OpenApiClient, ssl_option
from tuya_events.openapi.errors import REQUEST_TIME_INVALID, SIGN_INVALID, OpenApiError
from tuya_events.openapi.signing import TOKEN_PATH
from tuya_events.openapi.tokens import parse_token
from tuya_events.tuya.devices import Device
from tuya_events.tuya.regions import REGIONS

CLOCK, KEYS, DEVICES = "clock", "openapi-keys", "project-devices"
DETAILS, STATUS, CONTROL = "api-details", "api-status", "api-control"
TITLES = {
    CLOCK: "clock agrees with Tuya's",
    KEYS: "OpenAPI key pair",
    DEVICES: "devices in the cloud project",
    DETAILS: "device details API (catalogue)",
    STATUS: "device status API (resync)",
    CONTROL: "device control API (action handlers)",
}
CHECKS = tuple(TITLES)
LISTING_PAGE = 20
CLOCK_NOTE_SECONDS = 10.0  # accepted, but worth saying


@dataclass(frozen=True)
class DataCenter:
    name: str  # a region name, or the key that gave the URL
    url: str


def data_centers(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Region name -> OpenAPI URL: Tuya's table, or (tests) the one given to replace it."""
    if overrides:
        return dict(overrides)
    return {name: region.openapi_url for name, region in REGIONS.items()}


@dataclass
class TokenAnswer:
    """One token call: what Tuya said (or why it said nothing), and when."""

    data_center: DataCenter
    legacy: bool
    sent_ms: float
    received_ms: float
    t_ms: int | None = None
    result: Any = None
    error: OpenApiError | None = None

    @property
    def answered(self) -> bool:
        """Tuya answered (success or a Tuya error code), rather than the network failing."""
        return self.error is None or self.error.code is not None

    @property
    def skew_seconds(self) -> float | None:
        """Tuya's clock minus ours, at the middle of the exchange."""
        if self.t_ms is None:
            return None
        return (self.t_ms - (self.sent_ms + self.received_ms) / 2) / 1000


class OpenApiChecks:
    def __init__(
        self, settings: Settings, report: Report, table: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.report = report
        self.table = data_centers(table)
        tuya = settings.tuya
        self.credentials = (tuya.access_id, tuya.access_secret.get_secret_value())

    def _add(self, result: Result) -> None:
        self.report.add(result)

    def _count(self, *_: object) -> None:
        self.report.openapi_calls += 1

    def configured(self) -> DataCenter:
        tuya = self.settings.tuya
        if tuya.openapi_url:
            return DataCenter("tuya.openapi_url", tuya.openapi_url)
        name = tuya.region or "eu"
        return DataCenter(name, self.table.get(name, REGIONS[name].openapi_url))

    async def run(self) -> None:
        options = self.settings.openapi
        timeout = aiohttp.ClientTimeout(total=options.timeout)
        connector = aiohttp.TCPConnector(ssl=ssl_option(self.settings))
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, trust_env=False
        ) as session:
            home = self.configured()
            answer = await self._token(session, home, options.legacy_signing)
            self._add(self._clock(answer))
            accepted = await self._keys(session, answer)
        if accepted is None:
            why = "needs a key pair Tuya accepts (see above)"
            for check in (DEVICES, DETAILS, STATUS, CONTROL):
                self._add(skipped(check, TITLES[check], why))
            return
        await self._project(accepted)

    # -- the token call: clock and keys -----------------------------------------------------

    async def _token(
        self, session: aiohttp.ClientSession, where: DataCenter, legacy: bool
    ) -> TokenAnswer:
        access_id, secret = self.credentials
        options = self.settings.openapi.model_copy(update={"legacy_signing": legacy})
        client = OpenApiClient(Credentials(access_id, secret, where.url), options)
        signed = client.sign("GET", TOKEN_PATH, query=(("grant_type", "1"),))
        sent = time.time() * 1000
        answer = TokenAnswer(where, legacy, sent, sent)
        self._count()
        try:
            async with session.get(client.url_for(signed), headers=signed.headers) as response:
                status, raw = response.status, await response.read()
        except asyncio.TimeoutError:
            answer.error = OpenApiError(
                None, f"no answer from {where.url} within {options.timeout:g}s", reason="timeout"
            )
            return answer
        except aiohttp.ClientError as exc:
            answer.error = OpenApiError(
                None,
                f"cannot reach {where.url}: {type(exc).__name__}: {exc}",
                reason="network_error",
            )
            return answer
        answer.received_ms = time.time() * 1000
        _read_answer(answer, status, raw)
        return answer

    def _clock(self, answer: TokenAnswer) -> Result:
        title = TITLES[CLOCK]
        skew = answer.skew_seconds
        if skew is None:
            why = "the OpenAPI did not answer (see the key pair below)"
            return skipped(CLOCK, title, why if not answer.answered else "Tuya's answer had no t")
        direction = "ahead of" if skew < 0 else "behind"
        off = f"this machine's clock is {format_duration(abs(skew))} {direction} Tuya's"
        if answer.error is not None and answer.error.code == REQUEST_TIME_INVALID:
            return failed(
                CLOCK,
                title,
                f"Tuya refused the request time (1013): {off}",
                fixes.CLOCK,
                skew_seconds=round(skew, 3),
            )
        if abs(skew) >= CLOCK_NOTE_SECONDS:
            detail = f"{off}; Tuya accepted it, but a clock this far off skews event ages"
        else:
            detail = f"within {format_duration(abs(skew))} of Tuya's"
        return passed(CLOCK, title, detail, skew_seconds=round(skew, 3))

    async def _keys(
        self, session: aiohttp.ClientSession, answer: TokenAnswer
    ) -> TokenAnswer | None:
        """The answer whose token the project checks use, or None when no key pair works."""
        title, home = TITLES[KEYS], answer.data_center
        error = answer.error
        if error is None:
            self._add(passed(KEYS, title, f"a token from {home.name} ({home.url})"))
            return answer
        if error.code == REQUEST_TIME_INVALID:
            why = "Tuya refused the request time before checking the key pair: fix the clock first"
            self._add(skipped(KEYS, title, why))
            return None
        if error.code != SIGN_INVALID:
            fix = fixes.openapi_fix(error)
            self._add(failed(KEYS, title, f"{home.name} ({home.url}): {error.describe()}", fix))
            return None
        elsewhere = await self._elsewhere(session, answer)
        if elsewhere is not None:
            self._add(_lives_elsewhere(answer, elsewhere))
            return elsewhere
        self._add(
            failed(
                KEYS,
                title,
                f"sign invalid (1004) on {home.name} ({home.url}), and no other data center "
                "accepts this key pair",
                fixes.KEYS,
            )
        )
        return None

    async def _elsewhere(
        self, session: aiohttp.ClientSession, refused: TokenAnswer
    ) -> TokenAnswer | None:
        """The data center (or signing scheme) that accepts the key pair, if one does."""
        home = refused.data_center
        tried = {home.url.rstrip("/")}
        for name, url in self.table.items():
            if url.rstrip("/") in tried:
                continue
            tried.add(url.rstrip("/"))
            answer = await self._token(session, DataCenter(name, url), refused.legacy)
            if answer.error is None:
                return answer
        other = await self._token(session, home, not refused.legacy)
        return other if other.error is None else None

    # -- the project --------------------------------------------------------------------------

    async def _project(self, accepted: TokenAnswer) -> None:
        access_id, secret = self.credentials
        where = accepted.data_center
        options = self.settings.openapi.model_copy(
            update={"legacy_signing": accepted.legacy, "max_attempts": 1}
        )
        client = OpenApiClient(
            Credentials(access_id, secret, where.url),
            options,
            ssl_context=ssl_option(self.settings),
        )
        token = parse_token(accepted.result, time.monotonic())
        REDACTOR.add([token.access_token, token.refresh_token])
        client.tokens.token = token  # the doctor's one token call also serves these
        catalogue = self.settings.catalogue
        directory = Directory(
            client,
            batch_size=catalogue.batch_size,
            family=catalogue.api_family,
            on_call=self._count,
            page_size=LISTING_PAGE,
        )
        on = "" if where == self.configured() else f" (on {where.name}, where the key pair works)"
        async with client:
            devices = await self._devices(directory, on)
            probe = devices[0].id if devices else None
            for check, needed, call in self._services(directory):
                if needed is not None:
                    self._add(skipped(check, TITLES[check], needed))
                elif probe is None:
                    why = "no device to ask about (see the devices above)"
                    self._add(skipped(check, TITLES[check], why))
                else:
                    self._add(await self._service(check, call, probe, directory, on))

    async def _devices(self, directory: Directory, on: str) -> list[Device]:
        title = TITLES[DEVICES]
        pages = cast(AsyncGenerator[list[Device], None], directory.list_devices())
        first: list[Device] = []
        try:
            async for page in pages:
                first = page
                break
        except OpenApiError as error:
            self._add(failed(DEVICES, title, error.describe() + on, fixes.openapi_fix(error)))
            return []
        finally:
            await pages.aclose()
        if not first:
            detail = f"the project has no devices{on}: nothing can send messages"
            self._add(failed(DEVICES, title, detail, fixes.LINK_APP_ACCOUNT, devices=0))
            return []
        if len(first) >= directory.page_size:
            count = f"{len(first)} or more devices"
        else:
            count = f"{len(first)} device{'s' if len(first) != 1 else ''}"
        names = ", ".join(device.name or device.id for device in first[:3])
        more = ", ..." if len(first) > 3 else ""
        self._add(passed(DEVICES, title, f"{count} ({names}{more}){on}", devices=len(first)))
        return first

    def _services(self, directory: Directory) -> list[tuple[str, str | None, Any]]:
        """(check, why it is not needed or None, the call) for each cloud service."""
        settings = self.settings
        control = any(
            handler.type == "action"
            or (handler.type == "mqtt" and handler.options.get("commands") is True)
            for handler in settings.handlers
        )
        return [
            (
                DETAILS,
                None if settings.enrichment.enabled else "enrichment is off: no catalogue calls",
                lambda device: directory.details([device]),
            ),
            (
                STATUS,
                None if settings.resync.enabled else "resync is off: no status calls",
                lambda device: directory.status([device]),
            ),
            (
                CONTROL,
                None if control else "no action handler (nor MQTT commands) sends commands",
                directory.specification,
            ),
        ]

    async def _service(
        self, check: str, call: Any, device: str, directory: Directory, on: str
    ) -> Result:
        title = TITLES[check]
        try:
            await call(device)
        except OpenApiError as error:
            return failed(check, title, error.describe() + on, fixes.openapi_fix(error))
        family = directory.working_family or directory.family
        what = "answered"
        if check == CONTROL:
            what = "its read-only specification call answered (no command was sent)"
        return passed(check, title, f"{what}, {family} family, about device {device}{on}")


def _read_answer(answer: TokenAnswer, status: int, raw: bytes) -> None:
    """Fill ``answer`` from Tuya's JSON: its ``t`` whatever the outcome, and the result or the
    error; anything else is a transport failure."""
    try:
        document = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict) or "success" not in document:
        excerpt = " ".join(raw[:200].decode("utf-8", "replace").split()) or "no body"
        answer.error = OpenApiError(
            None,
            f"{answer.data_center.url} did not answer as Tuya's OpenAPI (HTTP {status}: {excerpt})",
            hint="check tuya.region or tuya.openapi_url",
            reason=f"http_{status // 100}xx" if status != 200 else "bad_response",
        )
        return
    t = document.get("t")
    if isinstance(t, int) and not isinstance(t, bool):
        answer.t_ms = t
    if document.get("success") is True:
        answer.result = document.get("result")
        try:
            parse_token(answer.result, time.monotonic())
        except OpenApiError as error:
            answer.error = error
        return
    code = document.get("code")
    number = int(code) if isinstance(code, (int, str)) and str(code).isdigit() else None
    tid = document.get("tid")
    answer.error = OpenApiError(
        number,
        str(document.get("msg") or "no message"),
        str(tid) if tid is not None else None,
        reason=None if number is not None else "bad_response",
        status=status,
        path=TOKEN_PATH,
    )


def _lives_elsewhere(refused: TokenAnswer, accepted: TokenAnswer) -> Result:
    home, there = refused.data_center, accepted.data_center
    if there.url == home.url:  # the other signing scheme
        flag = "true" if accepted.legacy else "false"
        scheme = "legacy" if accepted.legacy else "current"
        return failed(
            KEYS,
            TITLES[KEYS],
            f"sign invalid (1004) with the configured signing scheme; {home.name} accepts the "
            f"key pair with the {scheme} one",
            (f"set openapi.legacy_signing: {flag}",),
        )
    if there.name in REGIONS:
        setting = f"set tuya.region: {there.name}"
    else:
        setting = f"set tuya.openapi_url: {there.url}"
    return failed(
        KEYS,
        TITLES[KEYS],
        f"sign invalid (1004) on {home.name} ({home.url}), but {there.name} ({there.url}) "
        f"accepts this key pair: this project lives in {there.name}, not {home.name}",
        (f"{setting} (the message service follows the region, unless tuya.pulsar_url is set)",),
        data_center=there.name,
    )
