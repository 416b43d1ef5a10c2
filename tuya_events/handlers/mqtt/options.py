"""The ``type: mqtt`` handler's options, validated when the file is loaded.

``password_file`` (like every ``*_file`` of a secret key) is read by the configuration loader
into ``password`` before these options see it.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from tuya_events.config.types import Duration

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# A topic level we make from a prefix: no wildcards, no empty levels, no leading ``$``
# (brokers reserve ``$SYS``).
_PREFIX = re.compile(r"^[^/#+$\x00][^#+\x00]*$")
_CLIENT_ID = re.compile(r"^[0-9A-Za-z_.:-]{1,128}$")


class HomeAssistantOptions(BaseModel):
    """Home Assistant's MQTT discovery (``homeassistant/<component>/<node>/<object>/config``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    discovery: bool = False
    prefix: str = "homeassistant"
    # What a data point without a known mapping becomes: a plain sensor, or nothing.
    unknown_codes: Literal["sensor", "ignore"] = "sensor"
    # Where Home Assistant announces itself; ``online`` there republishes every config.
    status_topic: str | None = None  # default: "<prefix>/status"

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _checked_prefix(value)

    @property
    def birth_topic(self) -> str:
        return self.status_topic or f"{self.prefix}/status"


class TlsOptions(BaseModel):
    """TLS for ``mqtts://``: the system's CAs unless ``ca_file``; a client certificate when
    the broker asks for one. ``verify: false`` only for tests: the daemon says so at start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{value} is not a file")
        return value

    @model_validator(mode="after")
    def _pair(self) -> TlsOptions:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self

    def context(self) -> ssl.SSLContext:
        """The client's TLS context; raises ValueError naming the file that cannot be used."""
        if not self.verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            try:
                context = ssl.create_default_context(cafile=self.ca_file)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(
                    f"ca_file {self.ca_file} is not a readable PEM bundle ({exc})"
                ) from None
        if self.cert_file is not None:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (ssl.SSLError, OSError) as exc:
                raise ValueError(
                    f"cert_file/key_file cannot be loaded as a certificate and its key ({exc})"
                ) from None
        return context


class MqttOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None  # default: tuya-events-<handler name>
    protocol: Literal["3.1.1", "5"] = "5"
    keepalive: Duration = Field(default=60.0, ge=0, le=65535)
    tls: TlsOptions = Field(default_factory=TlsOptions)
    prefix: str = "tuya"
    qos: Literal[0, 1] = 1
    # How long one publish may wait for its PUBACK before the broker counts as down.
    publish_timeout: Duration = Field(default=10.0, gt=0, le=600)
    connect_timeout: Duration = Field(default=10.0, gt=0, le=600)
    reconnect_max_wait: Duration = Field(default=30.0, gt=0, le=3600)
    # After every (re)connection, publish again the retained state of every known device (a
    # broker without persistence forgets retained messages when it restarts).
    republish_on_connect: bool = True
    events: bool = True  # device events on <prefix>/<id>/event/<biz_code>
    homeassistant: HomeAssistantOptions = Field(default_factory=HomeAssistantOptions)
    commands: bool = False
    command_family: Literal["iot-03", "devices"] = "iot-03"
    # A device's writable codes, fetched through the OpenAPI, are kept this long.
    specification_ttl: Duration = Field(default=3600.0, ge=0)
    max_concurrent_commands: int = Field(default=8, ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValueError("must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]") from None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        if parts.username is not None or parts.password is not None:
            raise ValueError("put the credentials in username: and password(_file):")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be only mqtt(s)://HOST[:PORT], without a path or query")
        del port  # checked above: urlsplit raises for a port out of range
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _checked_prefix(value)

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and not _CLIENT_ID.match(value):
            raise ValueError("must be 1-128 characters of A-Z a-z 0-9 _ . : -")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MqttOptions:
        if self.password is not None and self.username is None:
            raise ValueError("password needs username")
        if not self.tls.verify and self.scheme != "mqtts":
            raise ValueError("tls.verify applies to mqtts:// only")
        if self.homeassistant.prefix == self.prefix:
            raise ValueError("homeassistant.prefix must differ from prefix")
        return self

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None  # checked by _url
        return host

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or DEFAULT_PORTS[self.scheme]


def _checked_prefix(value: str) -> str:
    value = value.strip("/")
    if not value or not _PREFIX.match(value) or "//" in value:
        raise ValueError(
            "must be topic levels without wildcards (+ #), empty levels or a leading $"
        )
    return value
