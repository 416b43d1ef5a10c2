"""The typed settings. Sections forbid unknown keys, so a typo is an error, not a silent default.

Handler sections are open: their own keys are validated by each handler type when it is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from tuya_events.config.interpolate import SecretFileError, read_secret_file
from tuya_events.config.types import Duration, ListenAddress
from tuya_events.tuya.regions import REGIONS, event_topic, subscription_name
from tuya_events.tuya.regions import notice_topic as documented_notice_topic

RegionName = Literal["cn", "us", "us-east", "eu", "eu-west", "in"]
RateClass = Literal["command", "query"]  # the OpenAPI calls' rate-limit classes

# Keys that hold secrets anywhere in the file: masked when shown, and ``<key>_file`` reads them.
SECRET_KEYS = ("access_secret", "secret", "password", "token", "dsn")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TuyaSettings(Section):
    access_id: str = Field(min_length=1)
    access_secret: SecretStr = Field(min_length=24)
    region: RegionName | None = None
    pulsar_url: str | None = None
    openapi_url: str | None = None
    environment: Literal["prod", "test"] = "prod"
    subscription_suffix: str = Field(default="sub", min_length=1)
    sign_check: Literal["off", "log", "enforce"] = "log"
    # Tuya's high-priority notices (backlog alarms), consumed beside the events on the same
    # subscription name; a project without the topic only gets a warning at start.
    notices: bool = True
    notice_topic: str | None = Field(default=None, min_length=1)
    # native: Apache's pulsar-client (faster); websocket: Pulsar's WebSocket API over HTTPS-like
    # traffic, for networks and machines the native client cannot reach (docs/transports.md).
    transport: Literal["native", "websocket"] = "native"
    websocket_url: str | None = Field(default=None, min_length=1)

    @field_validator("access_secret")
    @classmethod
    def _ascii(cls, value: SecretStr) -> SecretStr:
        """Tuya issues ASCII secrets; anything else cannot make the AES key (16 bytes from its
        middle 16 characters) and would fail on the first message instead of here."""
        if not value.get_secret_value().isascii():
            raise ValueError("must be the project's Access Secret: ASCII letters and digits")
        return value

    @property
    def resolved_pulsar_url(self) -> str:
        return self.pulsar_url or REGIONS[self.region or "eu"].pulsar_url

    @property
    def resolved_websocket_url(self) -> str:
        """``websocket_url``, else the WebSocket API of the data center whose native endpoint
        ``pulsar_url`` names, else the region's (``_websocket_url_known`` makes sure one of
        these is meant when the WebSocket transport is chosen)."""
        if self.websocket_url:
            return self.websocket_url
        for region in REGIONS.values():
            if self.pulsar_url and region.pulsar_url.rstrip("/") == self.pulsar_url.rstrip("/"):
                return region.websocket_url
        return REGIONS[self.region or "eu"].websocket_url

    @property
    def resolved_openapi_url(self) -> str:
        return self.openapi_url or REGIONS[self.region or "eu"].openapi_url

    @property
    def topic(self) -> str:
        return event_topic(self.access_id, self.environment)

    @property
    def resolved_notice_topic(self) -> str:
        """``notice_topic``, else the one Tuya documents for the access id (regions.py)."""
        return self.notice_topic or documented_notice_topic(self.access_id)

    @property
    def subscription(self) -> str:
        return subscription_name(self.access_id, self.subscription_suffix)

    @model_validator(mode="after")
    def _distinct_topics(self) -> TuyaSettings:
        """One consumer per topic and subscription: the same topic twice would be refused by
        the broker (Failover, same consumer name) or read twice."""
        if self.notices and self.resolved_notice_topic == self.topic:
            raise ValueError("notice_topic must not be the event topic")
        return self

    @model_validator(mode="after")
    def _websocket_url_known(self) -> TuyaSettings:
        """A ``pulsar_url`` of another broker says nothing about its WebSocket API: falling
        back to the region's would send the login to Tuya's data center instead."""
        if self.transport != "websocket" or self.websocket_url or not self.pulsar_url:
            return self
        documented = {region.pulsar_url.rstrip("/") for region in REGIONS.values()}
        if self.pulsar_url.rstrip("/") not in documented:
            raise ValueError(
                "transport websocket with a pulsar_url of another broker: give its WebSocket "
                "API as websocket_url (ws:// or wss://host:port)"
            )
        return self


class TlsSettings(Section):
    verify: bool = True
    ca_file: str | None = None
    insecure: bool = False

    @property
    def verify_certificates(self) -> bool:
        return self.verify and not self.insecure


class ConsumerSettings(Section):
    max_in_flight: int = Field(default=1000, ge=1, le=1_000_000)
    # Per partition (the C++ multi-topics consumer gives each partition its own queue of this
    # size). What an instance holds for a partition that moves to a joining instance is handled
    # twice unless it finishes within the broker's failover delay: benchmarks/handover.py.
    receiver_queue_size: int = Field(default=100, ge=1, le=100_000)
    shutdown_timeout: Duration = 30.0
    operation_timeout: Duration = 30.0
    dedupe_cache_size: int = Field(default=100_000, ge=0)
    # individual: one ack per message. cumulative: one ack per partition for its finished prefix
    # (never past an unfinished message); faster, but see README "Acknowledgements".
    acknowledgement: Literal["individual", "cumulative"] = "individual"


class RetrySettings(Section):
    max_attempts: int = Field(default=5, ge=1)
    initial_backoff: Duration = 0.5
    max_backoff: Duration = 60.0
    # Outages of infrastructure (database down, webhook 5xx) retry this long before the message
    # goes to the dead-letter store; Tuya itself keeps unacknowledged messages about 2 hours.
    infrastructure_max_time: Duration = 3600.0
    # While a handler's target is down, one message at a time probes it, at most this far apart
    # (from initial_backoff up): the longest its return can go unnoticed.
    outage_probe_max: Duration = 1.0


class DeadLetterSettings(Section):
    path: str = "dead-letters.sqlite3"
    store_plaintext: bool = False


class StateSettings(Section):
    """``state:``: where the daemon keeps what it learns (the device catalogue, and more)."""

    # Default: the directory of the dead-letter store, so one volume holds both.
    directory: str | None = None


class CatalogueSettings(Section):
    """``catalogue:``: the local copy of the project's devices and their specifications."""

    path: str | None = None  # default: catalogue.sqlite3 in the state directory
    # How old a device's details and specification may grow before they are fetched again.
    refresh_interval: Duration = Field(default=24 * 3600.0, gt=0)
    # Ids per batch call (Tuya documents 20 for the batch details and status calls).
    batch_size: int = Field(default=20, ge=1, le=100)
    # Which API family answers: iot-03 first, /v1.0/devices on 1106 (auto), or only one.
    api_family: Literal["auto", "iot-03", "devices"] = "auto"
    # On a spent quota or an expired/unsubscribed service, no catalogue call for this long.
    quota_pause: Duration = Field(default=6 * 3600.0, gt=0)
    # A device the OpenAPI refused or did not know is asked about again after this long.
    retry_failed: Duration = Field(default=3600.0, gt=0)
    # List the project's devices in the background when the daemon starts on an empty catalogue.
    sync_on_start: bool = True


class ResyncSettings(Section):
    """``resync:``: after a gap longer than Tuya keeps messages, the devices' current status."""

    enabled: bool = True
    # A gap (since we last consumed) longer than this starts a resync; Tuya keeps about 2 h.
    after: Duration = Field(default=6300.0, gt=0)
    # Devices the OpenAPI could not answer for (an outage) are tried again after each of these.
    retry_delays: list[Duration] = Field(default_factory=lambda: [30.0, 60.0, 120.0, 300.0, 600.0])
    # How often the daemon records that it is consuming (the gap's resolution).
    record_interval: Duration = Field(default=10.0, gt=0)


class EnrichmentSettings(Section):
    """``enrichment:``: names, units and scaled values on every event, from the catalogue."""

    enabled: bool = True
    # How long the messages of a device seen for the first time wait for its lookup.
    max_wait: Duration = Field(default=2.0, ge=0, le=60)


class HttpSettings(Section):
    enabled: bool = True
    listen: ListenAddress = ("127.0.0.1", 9464)
    ready_max_silence: Duration | None = None
    # The listener's bearer token, for the status page at / and the live tail (unless
    # ``tail.token`` is set, which then serves both): required when set; without one, neither is
    # served on a listener beyond loopback.
    token: SecretStr | None = Field(default=None, min_length=16)


class TailSettings(Section):
    """``tail:``: the live stream of events ``tuya-events tail`` reads from the HTTP listener."""

    enabled: bool = True
    # A bearer token (or ``token_file``): required when set, and to serve the tail on a
    # listener beyond loopback. Without one, ``http.token`` is used when that is set.
    token: SecretStr | None = Field(default=None, min_length=16)
    # Messages a viewer may fall behind by; beyond, the newer are only counted, and it is told.
    buffer: int = Field(default=1000, ge=1, le=100_000)
    max_viewers: int = Field(default=4, ge=1, le=64)
    # A viewer whose connection takes no byte for this long is disconnected (its slot freed).
    stall_timeout: Duration = Field(default=60.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _token_file(cls, data: Any) -> Any:
        """``token_file: PATH`` reads the token, as ``*_file`` does for the other secrets."""
        if not isinstance(data, dict) or "token_file" not in data:
            return data
        data = dict(data)
        path = data.pop("token_file")
        if data.get("token") not in (None, ""):
            raise ValueError("give either token or token_file, not both")
        if not isinstance(path, str) or not path:
            raise ValueError("token_file must be a file path")
        try:
            data["token"] = read_secret_file(path)
        except OSError as exc:
            raise ValueError(f"token_file: cannot read {path}: {exc.strerror or exc}") from None
        except SecretFileError as exc:
            raise ValueError(f"token_file: {exc}") from None
        return data


class LoggingSettings(Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class RateLimit(Section):
    """``rate`` requests per second, ``burst`` at once; a bare number is the rate."""

    rate: float = Field(gt=0, le=100_000)
    burst: int = Field(default=1, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _number(cls, data: Any) -> Any:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return {"rate": data}
        return data


def _default_limits() -> dict[RateClass, RateLimit]:
    # Tuya's per-project limits: device commands 4/s, queries 50/s.
    return {"command": RateLimit(rate=4), "query": RateLimit(rate=50)}


class OpenApiOptions(Section):
    """How the OpenAPI client talks to Tuya; the credentials and URL come from ``tuya:``.

    Defined here, not in :mod:`tuya_events.openapi`, because it is a section of the file (the
    top-level ``openapi:``) and the configuration must not import the client.
    """

    legacy_signing: bool = False
    lang: str = Field(default="en", pattern=r"^[A-Za-z_-]{1,16}$")
    timeout: Duration = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_backoff: Duration = 0.2
    max_backoff: Duration = 5.0
    refresh_margin: Duration = 60.0
    rate_limits: dict[RateClass, RateLimit] = Field(default_factory=_default_limits)
    max_connections: int = Field(default=16, ge=1, le=1000)

    @model_validator(mode="after")
    def _limits(self) -> OpenApiOptions:
        """A class left out keeps its default: giving ``command`` must not unlimit ``query``."""
        merged = {**_default_limits(), **self.rate_limits}
        object.__setattr__(self, "rate_limits", merged)
        if self.initial_backoff > self.max_backoff:
            raise ValueError("initial_backoff must not exceed max_backoff")
        return self


class HandlerSettings(BaseModel):
    """One handler entry: ``type``, optional ``name`` and ``match``, plus the type's own keys."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str = Field(min_length=1)
    name: str | None = None
    match: dict[str, Any] | list[dict[str, Any]] | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _default_handlers() -> list[HandlerSettings]:
    return [HandlerSettings(type="log")]


class LedgerSettings(Section):
    """``ledger:``: a dedupe ledger on PostgreSQL shared by several instances (opt-in)."""

    dsn: SecretStr | None = None
    # Or the name of a database handler on PostgreSQL whose dsn the ledger shares.
    database: str | None = None
    # The handlers it guards, by name; by default every webhook, pulsar and action handler
    # (the database handler is idempotent on its own, the log handler harmless).
    handlers: list[str] | None = None
    table: str = Field(default="tuya_events_ledger", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # How long a claim holds when its instance goes quiet: then another may take the event over.
    lease: Duration = Field(default=30.0, gt=0)
    # How long done events are remembered: past Tuya's retention of unacknowledged messages.
    keep: Duration = Field(default=3 * 3600.0, gt=0)


def state_directory(settings: Settings) -> Path:
    """``state.directory``, else the dead-letter store's directory."""
    if settings.state.directory:
        return Path(settings.state.directory)
    return Path(settings.dead_letter.path).parent


def catalogue_path(settings: Settings) -> Path:
    return Path(settings.catalogue.path or state_directory(settings) / "catalogue.sqlite3")


def ledger_dsn(settings: Settings) -> str | None:
    """The ledger's DSN: its own, or that of the database handler it names; None: no ledger."""
    ledger = settings.ledger
    if ledger.dsn is not None:
        return ledger.dsn.get_secret_value()
    if ledger.database is None:
        return None
    for name, handler in zip(settings.handler_names(), settings.handlers, strict=True):
        if name == ledger.database and handler.type == "database":
            dsn = handler.options.get("dsn")
            return dsn if isinstance(dsn, str) else None
    return None


class Settings(Section):
    tuya: TuyaSettings
    tls: TlsSettings = TlsSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    retry: RetrySettings = RetrySettings()
    dead_letter: DeadLetterSettings = DeadLetterSettings()
    http: HttpSettings = HttpSettings()
    tail: TailSettings = TailSettings()
    logging: LoggingSettings = LoggingSettings()
    # The OpenAPI client's options, for every action handler and ``tuya-events api``: one
    # client per cloud project, so one place to set them.
    openapi: OpenApiOptions = OpenApiOptions()
    ledger: LedgerSettings = LedgerSettings()
    state: StateSettings = StateSettings()
    catalogue: CatalogueSettings = CatalogueSettings()
    enrichment: EnrichmentSettings = EnrichmentSettings()
    resync: ResyncSettings = ResyncSettings()
    handlers: list[HandlerSettings] = Field(default_factory=_default_handlers)

    def handler_names(self) -> list[str]:
        return [handler.name or handler.type for handler in self.handlers]

    @property
    def openapi_given(self) -> bool:
        """Whether the file has a top-level ``openapi:``: only then do handlers' own blocks
        have to agree with it (files from before it existed keep working)."""
        return "openapi" in self.model_fields_set
