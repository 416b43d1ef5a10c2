"""The typed settings. Sections forbid unknown keys, so a typo is an error, not a silent default.

Handler sections are open: their own keys are validated by each handler type when it is built.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from tuya_events.config.types import Duration, ListenAddress
from tuya_events.tuya.regions import REGIONS, event_topic, subscription_name

RegionName = Literal["cn", "us", "us-east", "eu", "eu-west", "in"]

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

    @property
    def resolved_pulsar_url(self) -> str:
        return self.pulsar_url or REGIONS[self.region or "eu"].pulsar_url

    @property
    def resolved_openapi_url(self) -> str:
        return self.openapi_url or REGIONS[self.region or "eu"].openapi_url

    @property
    def topic(self) -> str:
        return event_topic(self.access_id, self.environment)

    @property
    def subscription(self) -> str:
        return subscription_name(self.access_id, self.subscription_suffix)


class TlsSettings(Section):
    verify: bool = True
    ca_file: str | None = None
    insecure: bool = False

    @property
    def verify_certificates(self) -> bool:
        return self.verify and not self.insecure


class ConsumerSettings(Section):
    max_in_flight: int = Field(default=1000, ge=1, le=1_000_000)
    receiver_queue_size: int = Field(default=1000, ge=1, le=100_000)
    shutdown_timeout: Duration = 30.0
    operation_timeout: Duration = 30.0
    dedupe_cache_size: int = Field(default=100_000, ge=0)


class RetrySettings(Section):
    max_attempts: int = Field(default=5, ge=1)
    initial_backoff: Duration = 0.5
    max_backoff: Duration = 60.0
    # Outages of infrastructure (database down, webhook 5xx) retry this long before the message
    # goes to the dead-letter store; Tuya itself keeps unacknowledged messages about 2 hours.
    infrastructure_max_time: Duration = 3600.0


class DeadLetterSettings(Section):
    path: str = "dead-letters.sqlite3"
    store_plaintext: bool = False


class HttpSettings(Section):
    enabled: bool = True
    listen: ListenAddress = ("127.0.0.1", 9464)
    ready_max_silence: Duration | None = None


class LoggingSettings(Section):
    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


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


class Settings(Section):
    tuya: TuyaSettings
    tls: TlsSettings = TlsSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    retry: RetrySettings = RetrySettings()
    dead_letter: DeadLetterSettings = DeadLetterSettings()
    http: HttpSettings = HttpSettings()
    logging: LoggingSettings = LoggingSettings()
    handlers: list[HandlerSettings] = Field(default_factory=_default_handlers)

    def handler_names(self) -> list[str]:
        return [handler.name or handler.type for handler in self.handlers]
