"""The catalogue at run time: devices in memory, and the decisions of when to ask the OpenAPI.

The hot path reads :attr:`Catalogue.devices`, a plain dict. Everything else happens off it, in
one background task, so the OpenAPI is asked in batches and never per message:

- a device seen for the first time is *looked up*: its id joins the next batch (collected for a
  few milliseconds, so a burst of new devices shares calls), and :meth:`lookup` hands the caller
  a waiter that is done when the answer came (either way);
- events that change what we know update the catalogue (:meth:`observe`): a rename with its new
  name, a data-point name, online/offline, a deletion -- without a call when the event says it
  all, else with one, at most once a minute per device;
- devices older than ``refresh_interval`` are fetched again, a batch at a time;
- a specification is fetched once per product and shared by its devices while it is fresh.

Quotas are ours to keep: on a quota or subscription error (2884xxxx) no call is made for
``quota_pause`` (kept in the store, so a restart does not try again at once), with one log line,
a metric and an alert. A device the OpenAPI refused or does not know is asked about again after
``retry_failed``; an OpenAPI that cannot be reached is asked again with backoff, and in the
meantime no message waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tuya_events.catalogue.store import CatalogueStore
from tuya_events.config.settings import CatalogueSettings
from tuya_events.observability.logging import get_logger
from tuya_events.observability.metrics import Metrics
from tuya_events.openapi.errors import OpenApiError, is_subscription_code
from tuya_events.tuya.devices import DataPoint, Device
from tuya_events.tuya.events import DeviceEvent, Event

log = get_logger("tuya_events.catalogue")

FIRST_SEEN = "first_seen"
EVENT = "event"
PERIODIC = "periodic"
SYNC = "sync"
RESYNC = "resync"

# A burst of new devices within this window shares one batch call.
BATCH_WINDOW = 0.02
# An event asks for a device's details at most this often (a rename storm costs one call).
EVENT_REFRESH_SPACING = 60.0
# How often the background task looks for devices due for their periodic refresh.
PERIODIC_CHECK = 60.0
# Backoff while the OpenAPI cannot be reached.
OUTAGE_BACKOFF_START = 30.0
OUTAGE_BACKOFF_MAX = 600.0
PAUSED_UNTIL_KEY = "paused_until"
FAMILY_KEY = "api_family"

RENAMES = frozenset({"nameUpdate", "deviceNameUpdate"})
DP_RENAMES = frozenset({"dpNameUpdate"})
BINDINGS = frozenset({"bindUser", "deviceBindSpace", "deviceTransfer"})
DELETIONS = frozenset({"delete"})
ONLINE = frozenset({"online", "deviceOnline"})
OFFLINE = frozenset({"offline", "deviceOffline"})
WATCHED = RENAMES | DP_RENAMES | BINDINGS | DELETIONS | ONLINE | OFFLINE


class DeviceDirectory(Protocol):
    """What the catalogue asks (:class:`tuya_events.catalogue.directory.Directory`)."""

    working_family: str | None

    def list_devices(self) -> Any: ...  # an async iterator of pages (lists of Device)

    async def details(self, device_ids: Sequence[str]) -> dict[str, Device]: ...

    async def specification(self, device_id: str) -> dict[str, DataPoint]: ...

    async def status(self, device_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]: ...


class Paused(Exception):
    """The catalogue is not calling the OpenAPI now (a quota or subscription error)."""

    def __init__(self, until: float, code: int | None) -> None:
        super().__init__(
            f"paused until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(until))}"
        )
        self.until = until
        self.code = code


@dataclass
class SyncReport:
    """What one sync did (``tuya-events devices sync`` prints it)."""

    devices: int = 0
    new: int = 0
    removed: int = 0  # in the catalogue, no longer in the project's listing
    specifications_fetched: int = 0
    specifications_shared: int = 0
    calls: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # device id -> reason
    paused: bool = False


@dataclass
class _Lookup:
    """A lookup of one unknown device: done when its batch was answered (or could not be)."""

    done: asyncio.Future[None]
    deadline: float  # loop time after which its messages no longer wait


class Catalogue:
    def __init__(
        self,
        store: CatalogueStore | None,
        directory: DeviceDirectory | None,
        settings: CatalogueSettings | None = None,
        metrics: Metrics | None = None,
        *,
        max_wait: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        periodic_check: float = PERIODIC_CHECK,
    ) -> None:
        self.store = store
        self.periodic_check = periodic_check
        self.directory = directory
        self.settings = settings or CatalogueSettings()
        self.metrics = metrics
        self.max_wait = max_wait
        self._clock = clock
        self._wall = wall
        self.devices: dict[str, Device] = {}
        self.calls = 0  # OpenAPI calls made, for reports and tests
        self._lookups: dict[str, _Lookup] = {}
        self._wanted: dict[str, str] = {}  # device id -> trigger, for the next batch
        self._retry_at: dict[str, float] = {}  # device id -> clock time it may be asked again
        self._event_refreshed: dict[str, float] = {}
        self._outage_until = 0.0
        self._outage_backoff = OUTAGE_BACKOFF_START
        self.paused_until = 0.0  # wall time
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._save_pending: dict[str, Device] = {}
        self._deleted: set[str] = set()
        self._meta_pending: dict[str, str] = {}
        self._family_saved: str | None = None
        if metrics is not None:
            metrics.catalogue_devices.set_function(lambda: len(self.devices))
            metrics.catalogue_paused.set_function(lambda: 1.0 if self.paused else 0.0)
            for trigger in (FIRST_SEEN, EVENT, PERIODIC, SYNC, RESYNC):
                metrics.catalogue_refreshes.labels(trigger)

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> Catalogue:
        """Load the stored devices (no OpenAPI call)."""
        if self.store is None:
            return self
        store = self.store
        await asyncio.to_thread(store.open)
        for device in await asyncio.to_thread(store.load):
            self.devices[device.id] = device
        paused = await asyncio.to_thread(store.meta, PAUSED_UNTIL_KEY)
        if paused:
            with contextlib.suppress(ValueError):
                self.paused_until = float(paused)
        family = await asyncio.to_thread(store.meta, FAMILY_KEY)
        if family and self.directory is not None and self.directory.working_family is None:
            self.directory.working_family = family
        return self

    def start(self, sync_first: bool = False) -> None:
        """Run the background task (lookups, refreshes); ``sync_first``: list the project first."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(sync_first))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for lookup in self._lookups.values():
            if not lookup.done.done():
                lookup.done.set_result(None)
        self._lookups.clear()
        await self._flush()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)

    @property
    def paused(self) -> bool:
        return self._wall() < self.paused_until

    def resume(self) -> None:
        """End a pause now (``devices sync --force``: the user says the quota is back)."""
        self.paused_until = 0.0
        if self.store is not None:
            self._meta_pending[PAUSED_UNTIL_KEY] = "0"

    # -- the hot path's questions ------------------------------------------------------------

    def lookup(self, device_id: str) -> _Lookup | None:
        """Ask for an unknown device. A lookup to wait on, or None when it will not be answered
        soon (no OpenAPI, paused, unreachable, or refused recently): then nobody waits."""
        pending = self._lookups.get(device_id)
        if pending is not None:
            return pending
        if self.directory is None or self._wake is None or self.paused:
            return None
        now = self._clock()
        if now < self._retry_at.get(device_id, 0.0):
            return None
        loop = asyncio.get_running_loop()
        lookup = _Lookup(loop.create_future(), loop.time() + self.max_wait)
        self._lookups[device_id] = lookup
        self._want(device_id, FIRST_SEEN)
        if now < self._outage_until:
            # It is asked when the OpenAPI is back; its messages do not wait for that.
            lookup.deadline = 0.0
        return lookup

    def observe(self, event: Event) -> None:
        """An event that may change what we know (its ``biz_code`` is in :data:`WATCHED`)."""
        device_id = event.device_id
        code = event.biz_code
        if device_id is None or code is None:
            return
        data = event.biz_data if isinstance(event, DeviceEvent) else _biz_data(event)
        device = self.devices.get(device_id)
        if code in DELETIONS:
            if self.devices.pop(device_id, None) is not None:
                self._deleted.add(device_id)
                self._save_pending.pop(device_id, None)
                self._schedule_flush()
            return
        if device is None:
            return  # its first status report looks it up; nothing to update yet
        if code in ONLINE or code in OFFLINE:
            self._replace(device.with_online(code in ONLINE))
        elif code in DP_RENAMES:
            name = data.get("name")
            dp_id = data.get("dpId", data.get("dp_id"))
            point_code = data.get("code")
            if isinstance(name, str) and (
                isinstance(dp_id, (str, int)) or isinstance(point_code, str)
            ):
                self._replace(
                    device.with_point_name(
                        str(dp_id) if dp_id is not None and not isinstance(dp_id, bool) else None,
                        point_code if isinstance(point_code, str) else None,
                        name,
                    )
                )
        elif code in RENAMES and isinstance(data.get("name"), str) and data["name"]:
            self._replace(device.with_name(data["name"]))
        else:  # a rename without its new name, or a binding: ask, at most once a minute
            now = self._clock()
            if (
                now - self._event_refreshed.get(device_id, -EVENT_REFRESH_SPACING)
                >= EVENT_REFRESH_SPACING
            ):
                self._event_refreshed[device_id] = now
                self._want(device_id, EVENT)

    # -- commands -------------------------------------------------------------------------------

    async def sync(
        self,
        progress: Callable[[int, int | None], None] | None = None,
        device_ids: Sequence[str] | None = None,
    ) -> SyncReport:
        """List the project's devices (or fetch ``device_ids``), then the specifications that
        are missing or stale. ``progress(done, total)`` after each device. Raises
        :class:`Paused` when the catalogue is paused."""
        if self.directory is None:
            raise RuntimeError("the catalogue has no OpenAPI to ask")
        if self.paused:
            raise Paused(self.paused_until, None)
        report = SyncReport()
        calls_before = self.calls
        found: dict[str, Device] = {}
        try:
            if device_ids:
                found = await self._details(list(device_ids), SYNC)
                for device_id in device_ids:
                    if device_id not in found:
                        report.failures[device_id] = "not_found"
            else:
                async for page in self._pages():
                    for device in page:
                        found[device.id] = device
                    if progress is not None:
                        progress(0, len(found))
                if self.metrics is not None:
                    self.metrics.catalogue_refreshes.labels(SYNC).inc(len(found))
            total = len(found)
            for done, device in enumerate(found.values(), 1):
                report.new += device.id not in self.devices
                merged = self._merge(device)
                try:
                    shared = await self._specify(merged, force=False)
                except OpenApiError as error:
                    if self.pause_on(error):
                        report.paused = True
                        break
                    report.failures[device.id] = error.reason
                    self._replace(merged)
                else:
                    if shared is True:
                        report.specifications_shared += 1
                    elif shared is False:
                        report.specifications_fetched += 1
                if progress is not None:
                    progress(done, total)
            report.devices = len(found)
            if not device_ids and not report.paused:
                # A complete listing is the project as it is: what it lacks was removed.
                for gone in [d for d in self.devices if d not in found]:
                    del self.devices[gone]
                    self._deleted.add(gone)
                    self._save_pending.pop(gone, None)
                    report.removed += 1
        except OpenApiError as error:
            if not self.pause_on(error):
                raise
            report.paused = True
        finally:
            report.calls = self.calls - calls_before
            await self._flush()
        return report

    async def refresh_details(self, device_ids: Sequence[str]) -> dict[str, Device]:
        """Fresh details of these devices (a resync's first call), merged into the catalogue;
        a device new to it gets its specification too."""
        if self.directory is None:
            raise RuntimeError("the catalogue has no OpenAPI to ask")
        found = await self._details(list(device_ids), RESYNC)
        merged = {}
        for device_id, device in found.items():
            known = self.devices.get(device_id)
            device = self._merge(device)
            if known is None or not known.points:
                await self._specify(device, force=False)
                device = self.devices[device_id]
            else:
                self._replace(device)
            merged[device_id] = device
        return merged

    async def directory_status(self, device_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The current status items of these devices (batched)."""
        if self.directory is None:
            raise RuntimeError("the catalogue has no OpenAPI to ask")
        return await self.directory.status(list(device_ids))

    # -- the background task ------------------------------------------------------------------

    async def _run(self, sync_first: bool) -> None:
        assert self._wake is not None
        if sync_first and not self.devices and not self.paused:
            try:
                report = await self.sync()
            except (OpenApiError, Paused) as error:
                log.warning("device catalogue: start-up sync failed", error=str(error))
            else:
                log.info(
                    "device catalogue filled",
                    devices=report.devices,
                    specifications=report.specifications_fetched,
                    calls=report.calls,
                )
        last_periodic = self._clock()
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.periodic_check)
            self._wake.clear()
            if self._wanted:
                await asyncio.sleep(BATCH_WINDOW)  # let a burst of new devices join the batch
            try:
                await self._fetch_wanted()
                if self._clock() - last_periodic >= self.periodic_check:
                    last_periodic = self._clock()
                    if self.paused:
                        await self._reread_pause()
                    self._want_stale()
                    await self._fetch_wanted()
            except Exception:  # never let the catalogue's task die on a bug: log, go on
                log.exception("device catalogue: unexpected error")
                self._resolve(list(self._lookups))
                await asyncio.sleep(1.0)
            await self._flush()

    async def _reread_pause(self) -> None:
        """``devices sync --force`` may have ended the pause in the file: follow it."""
        if self.store is None:
            return
        try:
            stored = await asyncio.to_thread(self.store.meta, PAUSED_UNTIL_KEY)
            until = float(stored) if stored else 0.0
        except Exception:  # the file is the CLI's too: never fail on it
            return
        if until < self.paused_until:
            self.paused_until = until
            log.info("device catalogue: the pause was ended (devices sync --force); calling again")

    def _want(self, device_id: str, trigger: str) -> None:
        self._wanted.setdefault(device_id, trigger)
        if self._wake is not None:
            self._wake.set()

    def _want_stale(self) -> None:
        if self.paused or self._clock() < self._outage_until:
            return
        limit = (self._wall() - self.settings.refresh_interval) * 1000
        for device in self.devices.values():
            if device.fetched_at_ms < limit or device.specification_fetched_at_ms < limit:
                self._wanted.setdefault(device.id, PERIODIC)

    async def _fetch_wanted(self) -> None:
        while self._wanted:
            if self.paused or self._clock() < self._outage_until:
                self._resolve(list(self._lookups))
                if self.paused:
                    self._wanted.clear()
                return
            batch = []
            for device_id, trigger in list(self._wanted.items())[: self.settings.batch_size]:
                del self._wanted[device_id]
                if trigger == FIRST_SEEN and device_id in self.devices:
                    continue  # a sync or another batch brought it meanwhile: not asked twice
                batch.append((device_id, trigger))
            if batch:
                await self._fetch_batch(batch)

    async def _fetch_batch(self, batch: list[tuple[str, str]]) -> None:
        """One batch details call, then the specifications it needs: one per product, the
        products at once (the rate limiter spaces them). Each device's waiters are released
        as soon as its own answers are in."""
        ids = [device_id for device_id, _ in batch]
        try:
            found = await self._details(ids, None)
        except OpenApiError as error:
            self._batch_failed(ids, error)
            self._resolve(ids)
            return
        self._outage_backoff = OUTAGE_BACKOFF_START
        triggers = dict(batch)
        products: dict[str, list[Device]] = {}
        for device_id in ids:
            device = found.get(device_id)
            if device is None:
                self._failed(device_id, "not_found", self.settings.retry_failed)
                self._resolve([device_id])
                continue
            if self.metrics is not None:
                self.metrics.catalogue_refreshes.labels(triggers[device_id]).inc()
            merged = self._merge(device)
            products.setdefault(merged.product_id or merged.id, []).append(merged)
        await asyncio.gather(
            *(self._specify_product(group, triggers) for group in products.values())
        )

    async def _specify_product(self, devices: list[Device], triggers: dict[str, str]) -> None:
        """Devices of one product: the first fetches (or reuses) the specification, the rest
        share it."""
        for device in devices:
            try:
                await self._specify(device, force=triggers[device.id] == PERIODIC)
            except OpenApiError as error:
                if not self.pause_on(error):
                    self._replace(device)  # known by name; the specification comes later
                    self._failed(device.id, error.reason, self._retry_delay(error))
            finally:
                self._resolve([device.id])

    def _batch_failed(self, ids: list[str], error: OpenApiError) -> None:
        if self.pause_on(error):
            return
        delay = self._retry_delay(error)
        for device_id in ids:
            self._failed(device_id, error.reason, delay)
        if error.infrastructure:
            self._outage_until = self._clock() + delay
            log.warning(
                "device catalogue: the OpenAPI cannot be reached; events go on without names "
                "until it can",
                error=error.describe(),
                retry_in=round(delay),
            )

    def _retry_delay(self, error: OpenApiError) -> float:
        if error.infrastructure or error.retryable:
            delay = self._outage_backoff
            self._outage_backoff = min(self._outage_backoff * 2, OUTAGE_BACKOFF_MAX)
            return delay
        return self.settings.retry_failed

    def _failed(self, device_id: str, reason: str, retry_in: float) -> None:
        self._retry_at[device_id] = self._clock() + retry_in
        if self.metrics is not None:
            self.metrics.catalogue_lookup_failures.labels(reason).inc()

    def _resolve(self, device_ids: Iterable[str]) -> None:
        for device_id in device_ids:
            lookup = self._lookups.pop(device_id, None)
            if lookup is not None and not lookup.done.done():
                lookup.done.set_result(None)

    # -- calls ----------------------------------------------------------------------------------

    def count_call(self, call: str, outcome: str) -> None:
        """The directory's ``on_call``: told of every HTTP call it makes."""
        self.calls += 1
        if self.metrics is not None:
            self.metrics.catalogue_calls.labels(call, outcome).inc()

    async def _pages(self) -> Any:
        assert self.directory is not None
        async for page in self.directory.list_devices():
            yield page
        await self._remember_family()

    async def _details(self, ids: list[str], trigger: str | None) -> dict[str, Device]:
        assert self.directory is not None
        found = await self.directory.details(ids)
        await self._remember_family()
        if trigger is not None and self.metrics is not None:
            self.metrics.catalogue_refreshes.labels(trigger).inc(len(found))
        return found

    async def _specify(self, device: Device, force: bool) -> bool | None:
        """Give ``device`` a specification: shared from a device of its product when that one
        is fresh (True), fetched (False), or None when its own is still fresh."""
        assert self.directory is not None
        fresh_after = (self._wall() - self.settings.refresh_interval) * 1000
        if not force and device.specification_fetched_at_ms >= fresh_after and device.points:
            self._replace(device)
            return None
        donor = self._fresh_specification(device, fresh_after)
        if donor is not None:
            self._replace(device.with_points(donor.points, donor.specification_fetched_at_ms))
            return True
        points = await self.directory.specification(device.id)
        self._replace(device.with_points(points, int(self._wall() * 1000)))
        return False

    def _fresh_specification(self, device: Device, fresh_after: float) -> Device | None:
        if device.product_id is None:
            return None
        for other in self.devices.values():
            if (
                other.id != device.id
                and other.product_id == device.product_id
                and other.specification_fetched_at_ms >= fresh_after
                and other.points
            ):
                return other
        return None

    def _merge(self, fetched: Device) -> Device:
        """Fresh details over what we had: the specification and point names stay."""
        known = self.devices.get(fetched.id)
        return known.with_details(fetched) if known is not None else fetched

    def pause_on(self, error: OpenApiError) -> bool:
        """On a quota or subscription error: stop calling for ``quota_pause``. True if so."""
        if error.code is None or not is_subscription_code(error.code):
            return False
        pause = self.settings.quota_pause
        self.paused_until = self._wall() + pause
        self._wanted.clear()
        self._resolve(list(self._lookups))
        log.error(
            "device catalogue: Tuya refused its calls; no catalogue call for a while, events go "
            "on without names",
            code=error.code,
            error=error.describe(),
            pause_hours=round(pause / 3600, 2),
            until=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.paused_until)),
        )
        if self.metrics is not None:
            self.metrics.catalogue_pauses.labels(str(error.code)).inc()
        if self.store is not None:
            self._meta_pending[PAUSED_UNTIL_KEY] = str(self.paused_until)
        return True

    # -- keeping ------------------------------------------------------------------------------

    def _replace(self, device: Device) -> None:
        self.devices[device.id] = device
        self._save_pending[device.id] = device
        self._deleted.discard(device.id)
        if device.id in self._lookups:  # its messages need not wait for the rest of a sync
            self._resolve([device.id])
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _remember_family(self) -> None:
        family = self.directory.working_family if self.directory is not None else None
        if family and self.store is not None and self._family_saved != family:
            self._family_saved = family
            self._meta_pending[FAMILY_KEY] = family

    async def _flush(self) -> None:
        """Write what changed; a store that cannot be written is logged (the catalogue in
        memory goes on, and the next flush tries again)."""
        if self.store is None:
            self._save_pending.clear()
            self._deleted.clear()
            self._meta_pending.clear()
            return
        saving, deleting = list(self._save_pending.values()), list(self._deleted)
        meta = dict(self._meta_pending)
        if not saving and not deleting and not meta:
            return
        store = self.store
        try:
            if saving:
                await asyncio.to_thread(store.save, saving)
            if deleting:
                await asyncio.to_thread(store.delete, deleting)
            for key, value in meta.items():
                await asyncio.to_thread(store.set_meta, key, value)
        except Exception as error:
            log.error("device catalogue: cannot write the catalogue file", error=str(error))
            return
        for device in saving:
            if self._save_pending.get(device.id) is device:
                del self._save_pending[device.id]
        self._deleted.difference_update(deleting)
        for key in meta:
            self._meta_pending.pop(key, None)


def _biz_data(event: Event) -> dict[str, Any]:
    data = event.document.get("bizData")
    return data if isinstance(data, dict) else {}
