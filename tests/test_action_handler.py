"""The action handler through the real pipeline (in-process daemon, memory source, real
dead-letter store) against the fake Tuya OpenAPI on 127.0.0.1, which checks every signature and
token with its own code and records the commands it received."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from tests import vectors as v
from tests.fake_tuya_openapi import PUSH_PATH, FakeTuyaOpenApi
from tests.pipeline_support import ENCODER, Harness, in_harness
from tests.support.paths import ROOT
from tests.support.servers import serving
from tests.support.settings import make_settings, routes_of
from tests.support.waiting import wait_until
from tuya_events.config.errors import ConfigError
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.settings import Settings
from tuya_events.delivery import Delivery
from tuya_events.handlers.action import ActionHandler, path_problem
from tuya_events.handlers.base import BaseHandler
from tuya_events.handlers.templating import Scope, TemplateError, compile_template
from tuya_events.tuya.events import Event, build_event

FAST_CLIENT = {"initial_backoff": "10ms", "max_backoff": "50ms"}

DOOR_OPENS_LIGHT_ON = {
    "name": "hall-light",
    "when": {"status_code": "doorcontact_state", "value": {"doorcontact_state": True}},
    "then": {
        "command": {
            "device_id": "light-1",
            "commands": [
                {"code": "switch_1", "value": "{status.doorcontact_state}"},
                {"code": "note", "value": "opened: {event.device_id} ({event.product_key})"},
            ],
        }
    },
}


@pytest.fixture
def server() -> Iterator[FakeTuyaOpenApi]:
    with serving() as start:
        yield start(FakeTuyaOpenApi(v.ACCESS_ID, v.ACCESS_SECRET))


@pytest.fixture
def legacy_server() -> Iterator[FakeTuyaOpenApi]:
    """A project from before mid-2021: only the legacy sign passes, so an accepted call proves
    the client that sent it had ``legacy_signing`` on."""
    with serving() as start:
        yield start(FakeTuyaOpenApi(v.ACCESS_ID, v.ACCESS_SECRET, legacy=True))


def door(device: str, seq: int, opened: bool = True) -> tuple[bytes, dict[str, str]]:
    document = {
        "dataId": f"{device}-{seq}",
        "devId": device,
        "productKey": "pk_door",
        "status": [
            {"code": "doorcontact_state", "value": opened, "t": 1700000000000 + seq, "1": "x"}
        ],
    }
    return ENCODER.encode(document, em="aes_ecb", protocol=4)


def offline(device: str, name: str) -> tuple[bytes, dict[str, str]]:
    document = {
        "devId": device,
        "productKey": "pk_plug",
        "bizCode": "offline",
        "bizData": {"time": 1700000000, "name": name},
        "ts": 1700000000000,
    }
    return ENCODER.encode(document, em="aes_gcm", protocol=20)


def build(
    tmp_path: Path,
    server: FakeTuyaOpenApi | None,
    handlers: list[dict[str, Any]],
    **sections: Any,
) -> tuple[Settings, list[Any]]:
    """Settings with ``handlers`` and the OpenAPI URL of ``server``, and the built handlers."""
    if server is not None:
        sections["tuya"] = {"openapi_url": server.url, **sections.get("tuya", {})}
    settings = make_settings(tmp_path, handlers, **sections)
    routes = routes_of(settings)
    return settings, [route.handler for route in routes]


def action(*rules: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {"type": "action", "rules": list(rules), "openapi": FAST_CLIENT, **options}


async def settled(h: Harness, published: int) -> None:
    await wait_until(
        lambda: len(h.source.acknowledged) == published and not h.source.unacknowledged
    )


async def one_door_opening(h: Harness) -> list[Any]:
    """Publish one door opening, wait until it is settled, return the dead letters."""
    h.source.publish(*door("door-1", 1), key="door-1")
    await settled(h, 1)
    return h.store.list()


# -- the action --------------------------------------------------------------------------------


def test_door_opens_light_on_with_templated_values_and_types(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    settings, handlers = build(tmp_path, server, [action(DOOR_OPENS_LIGHT_ON)])

    async def scenario(h: Harness) -> None:
        h.source.publish(*door("door-1", 1, opened=True), key="door-1")
        h.source.publish(*door("door-1", 2, opened=False), key="door-1")  # no match
        await settled(h, 2)

    in_harness(settings, handlers, scenario)
    [command] = server.commands()
    assert command.path == "/v1.0/iot-03/devices/light-1/commands"
    assert command.json == {
        "commands": [
            {"code": "switch_1", "value": True},  # a whole placeholder keeps its type
            {"code": "note", "value": "opened: door-1 (pk_door)"},
        ]
    }
    assert server.codes() == [None, None]  # the token, then the command: signed correctly


def test_device_offline_pushes_a_notification_with_json_built_safely(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    notify = {
        "name": "offline-notify",
        "when": {"biz_code": "offline"},
        "then": [
            {
                "call": {
                    "method": "post",
                    "path": PUSH_PATH,
                    "body": {
                        "uid": "ay1528287200853",
                        "biz_type": 10,
                        "template_id": "PUSH_OFFLINE",
                        "template_param": {
                            "$json": {"device": "{event.device_id}", "name": "{biz_data.name}"}
                        },
                    },
                }
            },
            {"command": {"device_id": "siren-1", "code": "alarm_switch", "value": True}},
        ],
    }
    settings, handlers = build(tmp_path, server, [action(notify)])
    name = 'Plug "kitchen" {1}'

    async def scenario(h: Harness) -> None:
        h.source.publish(*offline("plug-7", name), key="plug-7")
        await settled(h, 1)

    in_harness(settings, handlers, scenario)
    [push] = server.requests(PUSH_PATH)
    assert push.code is None and push.json["biz_type"] == 10
    assert json.loads(push.json["template_param"]) == {"device": "plug-7", "name": name}
    [siren] = server.commands()
    assert siren.path.endswith("/siren-1/commands")
    assert siren.json == {"commands": [{"code": "alarm_switch", "value": True}]}
    assert siren.at > push.at  # the calls of a rule run in order


def test_the_devices_api_family_and_explicit_paths(tmp_path: Path, server: FakeTuyaOpenApi) -> None:
    rules = [
        {
            "name": "legacy-family",
            "when": {"device_id": "door-1"},
            "then": {"command": {"code": "switch_1", "value": True}},
        },
        {
            "name": "explicit",
            "when": {"device_id": "door-1"},
            "then": {
                "command": {
                    "device_id": "{event.device_id}",
                    "path": "/v1.0/iot-03/devices/{device_id}/commands",
                    "code": "switch_2",
                    "value": False,
                }
            },
        },
    ]
    settings, handlers = build(tmp_path, server, [action(*rules, command_family="devices")])

    async def scenario(h: Harness) -> None:
        h.source.publish(*door("door-1", 1), key="door-1")
        await settled(h, 1)

    in_harness(settings, handlers, scenario)
    assert [c.path for c in server.commands()] == [
        "/v1.0/devices/door-1/commands",
        "/v1.0/iot-03/devices/door-1/commands",
    ]


# -- exactly once ------------------------------------------------------------------------------


class Gate(BaseHandler):
    """Holds every message until opened, so it stays unacknowledged meanwhile."""

    def __init__(self) -> None:
        super().__init__("gate")
        self.opened = asyncio.Event()

    async def handle(self, event: Event, delivery: Delivery) -> None:
        await self.opened.wait()


def test_an_event_redelivered_by_the_broker_fires_once(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    """The message is redelivered while still unacknowledged (a consumer reconnect), and the
    same event comes again under a new message id (same dataId): one command in all."""
    settings, handlers = build(tmp_path, server, [action(DOOR_OPENS_LIGHT_ON)])
    gate = Gate()

    async def scenario(h: Harness) -> tuple[float, float]:
        first = h.source.publish(*door("door-1", 1), key="door-1")
        await wait_until(lambda: len(server.commands()) == 1)
        assert h.source.redeliver_unacknowledged() == 1
        await asyncio.sleep(0.1)  # the copy is received and queued behind the original
        gate.opened.set()
        await wait_until(lambda: h.outcomes("action", "duplicate") == 1)
        again = h.source.publish(first.body, first.properties, key="door-1")
        await wait_until(lambda: again.message_id in h.source.acknowledged)
        return h.outcomes("action", "success"), h.outcomes("action", "duplicate")

    success, duplicate = in_harness(settings, [*handlers, gate], scenario)
    assert len(server.commands()) == 1
    assert (success, duplicate) == (1, 2)


def test_without_the_dedupe_cache_the_handler_still_fires_once_per_event(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    settings, handlers = build(
        tmp_path, server, [action(DOOR_OPENS_LIGHT_ON)], consumer={"dedupe_cache_size": 0}
    )

    async def scenario(h: Harness) -> float:
        first = h.source.publish(*door("door-1", 1), key="door-1")
        await settled(h, 1)
        h.source.publish(first.body, first.properties, key="door-1")
        h.source.publish(*door("door-1", 2), key="door-1")  # a new event: fires
        await settled(h, 3)
        return h.outcomes("action", "success")

    assert in_harness(settings, handlers, scenario) == 3  # called three times ...
    commands = server.commands()
    assert len(commands) == 2  # ... but the redelivered event did not fire again


def test_a_retry_after_a_partial_failure_sends_only_the_calls_that_failed(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    rule = {
        "when": {"device_id": "door-1"},
        "then": [
            {"command": {"device_id": "light-1", "code": "switch_1", "value": True}},
            {"call": {"method": "POST", "path": PUSH_PATH, "body": {"template_id": "T"}}},
        ],
    }
    options = action(rule)
    options["openapi"] = {**FAST_CLIENT, "max_attempts": 1}  # the pipeline retries
    settings, handlers = build(tmp_path, server, [options])
    server.answer(1111, times=1, path=PUSH_PATH)

    assert in_harness(settings, handlers, one_door_opening) == []
    assert len(server.commands()) == 1
    assert [r.code for r in server.requests(PUSH_PATH)] == [1111, None]


def test_token_expiry_mid_run_is_handled_inside_the_client(tmp_path: Path) -> None:
    """Tokens live 1 s: the client refreshes ahead of expiry while events keep coming, and a token
    the server drops early (1010) is replaced on the spot; the pipeline never sees a failure."""
    server = FakeTuyaOpenApi(v.ACCESS_ID, v.ACCESS_SECRET, token_ttl=1).start()
    try:
        options = action(DOOR_OPENS_LIGHT_ON)
        options["openapi"] = {**FAST_CLIENT, "refresh_margin": "300ms"}
        settings, handlers = build(tmp_path, server, [options])

        def tokens_issued() -> int:
            return len(server.requests("/v1.0/token", code=None))

        async def scenario(h: Harness) -> tuple[float, float]:
            expired = False
            issued = tokens_issued()
            for seq in range(1, 13):
                h.source.publish(*door(f"door-{seq}", seq), key=f"door-{seq}")
                await asyncio.sleep(0.25)
                if not expired and seq >= 3 and tokens_issued() > issued:
                    # A refresh just happened: the client will trust this token for another
                    # 0.45 s at least, so the next command meets the 1010.
                    server.expire_tokens()
                    expired = True
                issued = tokens_issued()
            assert expired
            await settled(h, 12)
            return h.outcomes("action", "success"), h.outcomes("action", "retry")

        assert in_harness(settings, handlers, scenario) == (12, 0)
    finally:
        server.stop()
    assert len(server.commands()) == 12
    assert [r.code for r in server.requests("/commands")].count(1010) == 1
    refreshed = [r for r in server.requests("/v1.0/token/") if r.code is None]
    assert refreshed  # ahead of expiry, with the refresh token
    assert 1011 not in server.codes()


# -- cooldown and debounce -----------------------------------------------------------------------


def test_cooldown_per_device(tmp_path: Path, server: FakeTuyaOpenApi) -> None:
    rule = {
        "when": {"value": {"doorcontact_state": True}},
        "then": {
            "command": {"device_id": "light-{event.device_id}", "code": "switch_1", "value": 1}
        },
        "cooldown": "600ms",
    }
    settings, handlers = build(tmp_path, server, [action(rule)])

    async def scenario(h: Harness) -> None:
        for seq in (1, 2, 3):
            h.source.publish(*door("door-1", seq), key="door-1")
        h.source.publish(*door("door-2", 1), key="door-2")
        await settled(h, 4)
        await asyncio.sleep(0.7)
        h.source.publish(*door("door-1", 4), key="door-1")
        await settled(h, 5)

    in_harness(settings, handlers, scenario)
    targets = [c.path.split("/")[-2] for c in server.commands()]
    assert sorted(targets) == ["light-door-1", "light-door-1", "light-door-2"]


def test_debounce_fires_on_the_first_of_a_burst_and_again_after_quiet(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    rule = {
        "when": {"value": {"doorcontact_state": True}},
        "then": {"command": {"device_id": "light-1", "code": "seq", "value": "{event.data_id}"}},
        "debounce": "300ms",
        "per": "rule",
    }
    settings, handlers = build(tmp_path, server, [action(rule)])

    async def scenario(h: Harness) -> None:
        for seq in range(1, 6):  # chattering: every 100 ms, each restarts the quiet period
            h.source.publish(*door(f"door-{seq % 2}", seq), key=f"door-{seq % 2}")
            await asyncio.sleep(0.1)
        await settled(h, 5)
        await asyncio.sleep(0.45)
        h.source.publish(*door("door-0", 6), key="door-0")
        await settled(h, 6)

    in_harness(settings, handlers, scenario)
    fired = [c.json["commands"][0]["value"] for c in server.commands()]
    assert fired == ["door-1-1", "door-0-6"]


def test_a_retried_event_is_not_suppressed_by_its_own_debounce_or_cooldown(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    rule = {**DOOR_OPENS_LIGHT_ON, "debounce": "10s", "cooldown": "10s"}
    options = action(rule)
    options["openapi"] = {**FAST_CLIENT, "max_attempts": 1}
    settings, handlers = build(tmp_path, server, [options])
    server.answer(1111, times=2, path="/commands")

    assert in_harness(settings, handlers, one_door_opening) == []
    assert [r.code for r in server.requests("/commands")] == [1111, 1111, None]


# -- failures ----------------------------------------------------------------------------------


def test_permission_deny_is_dead_lettered_at_once_with_what_to_check(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    server.linked_devices = {"light-2"}  # light-1 is not linked to the cloud project
    settings, handlers = build(tmp_path, server, [action(DOOR_OPENS_LIGHT_ON)])

    [record] = in_harness(settings, handlers, one_door_opening)
    assert record.reason == "openapi_1106" and record.attempts == 1
    assert "hall-light" in record.message and "Link App Account" in record.message
    assert len(server.requests("/commands")) == 1


def test_a_wrong_secret_is_dead_lettered_with_the_signing_hint(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    server.access_secret = "another-secret-the-project-has-now"
    settings, handlers = build(tmp_path, server, [action(DOOR_OPENS_LIGHT_ON)])

    [record] = in_harness(settings, handlers, one_door_opening)
    assert record.reason == "openapi_1004" and record.attempts == 1
    assert "access_secret" in record.message and "region" in record.message
    assert v.ACCESS_SECRET not in record.message


def test_tuya_unreachable_is_retried_as_an_outage_and_the_command_sent_once_it_is_back(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    settings, handlers = build(tmp_path, server, [action(DOOR_OPENS_LIGHT_ON)])
    server.stop()

    async def scenario(h: Harness) -> list[Any]:
        h.source.publish(*door("door-1", 1), key="door-1")
        await wait_until(lambda: h.outcomes("action", "retry") >= 3)
        server.start()  # the same port
        await settled(h, 1)
        return h.store.list()

    assert in_harness(settings, handlers, scenario) == []  # past retry.max_attempts: an outage
    assert len(server.commands()) == 1


def test_a_placeholder_the_event_lacks_is_dead_lettered_with_its_name(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    rule = {
        "when": {"device_id": "door-1"},
        "then": {"command": {"code": "x", "value": "{status.va_temperature}"}},
    }
    settings, handlers = build(tmp_path, server, [action(rule)])

    [record] = in_harness(settings, handlers, one_door_opening)
    assert record.reason == "template" and "{status.va_temperature}" in record.message
    assert server.received == []


# -- dry run -----------------------------------------------------------------------------------


def test_dry_run_logs_the_call_and_sends_nothing(
    tmp_path: Path, server: FakeTuyaOpenApi, captured_logs: io.StringIO
) -> None:
    settings, handlers = build(tmp_path, server, [action(DOOR_OPENS_LIGHT_ON, dry_run=True)])

    assert in_harness(settings, handlers, one_door_opening) == []
    assert server.received == []
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines()]
    [dry] = [line for line in lines if line["event"] == "action (dry run): would call"]
    assert dry["method"] == "POST" and dry["path"] == "/v1.0/iot-03/devices/light-1/commands"
    assert dry["body"]["commands"][0] == {"code": "switch_1", "value": True}


# -- rate limit --------------------------------------------------------------------------------


def test_a_burst_of_events_keeps_commands_at_four_per_second(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    rule = {
        "when": {"value": {"doorcontact_state": True}},
        "then": {"command": {"device_id": "light-{event.device_id}", "code": "s", "value": 1}},
    }
    settings, handlers = build(tmp_path, server, [action(rule)])

    async def scenario(h: Harness) -> float:
        started = time.monotonic()
        for index in range(9):  # nine devices at once: nothing orders them
            h.source.publish(*door(f"door-{index}", 1), key=f"door-{index}")
        await settled(h, 9)
        return time.monotonic() - started

    elapsed = in_harness(settings, handlers, scenario)
    assert 1110 not in server.codes()
    arrivals = [c.at for c in server.commands()]
    assert len(arrivals) == 9 and elapsed >= 2.0
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(arrivals))


# -- sharing one client ------------------------------------------------------------------------


def test_action_handlers_of_one_project_share_one_token_and_one_limit(
    tmp_path: Path, server: FakeTuyaOpenApi
) -> None:
    """Two tokens for one key pair would invalidate each other; two limiters would double the
    project's command rate."""
    other = {
        "name": "other",
        "when": {"value": {"doorcontact_state": True}},
        "then": {"command": {"device_id": "light-2", "code": "switch_1", "value": True}},
    }
    settings, handlers = build(
        tmp_path,
        server,
        [
            {"name": "first", **action(DOOR_OPENS_LIGHT_ON)},
            {"type": "action", "name": "second", "rules": [other]},
        ],
    )

    async def scenario(h: Harness) -> None:
        assert handlers[0].client is handlers[1].client is not None  # started: one client
        for index in range(3):
            h.source.publish(*door(f"door-{index}", 1), key=f"door-{index}")
        await settled(h, 3)

    in_harness(settings, handlers, scenario)
    assert len(server.requests("/v1.0/token")) == 1
    assert 1011 not in server.codes() and 1110 not in server.codes()
    arrivals = [c.at for c in server.commands()]
    assert len(arrivals) == 6
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(arrivals))


def test_differing_client_options_for_one_project_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        build(
            tmp_path,
            None,
            [
                {"name": "a", **action(DOOR_OPENS_LIGHT_ON)},
                {"name": "b", **action(DOOR_OPENS_LIGHT_ON, openapi={"lang": "zh"})},
            ],
        )
    [(path, message)] = raised.value.problems
    assert path == "handlers[1].openapi" and "share one OpenAPI client" in message
    assert "handler 'a'" in message and "top-level openapi:" in message  # the better place


LIGHT_2_TOO = {
    "name": "light-2-too",
    "when": {"value": {"doorcontact_state": True}},
    "then": {"command": {"device_id": "light-2", "code": "switch_1", "value": True}},
}


def test_the_top_level_openapi_section_configures_every_action_handlers_client(
    tmp_path: Path, legacy_server: FakeTuyaOpenApi
) -> None:
    top = {**FAST_CLIENT, "legacy_signing": True, "lang": "de", "rate_limits": {"command": 2}}
    settings, handlers = build(
        tmp_path,
        legacy_server,
        [
            {"type": "action", "name": "first", "rules": [DOOR_OPENS_LIGHT_ON]},
            # a handler block that repeats the top-level section is accepted
            {"type": "action", "name": "second", "rules": [LIGHT_2_TOO], "openapi": top},
        ],
        openapi=top,
    )

    async def scenario(h: Harness) -> None:
        client = handlers[0].client
        assert client is handlers[1].client and client.options == settings.openapi
        for index in range(2):
            h.source.publish(*door(f"door-{index}", 1), key=f"door-{index}")
        await settled(h, 2)

    in_harness(settings, handlers, scenario)
    assert legacy_server.codes() == [None] * 5  # one token, four commands: legacy signs pass
    assert {r.headers["lang"] for r in legacy_server.received} == {"de"}
    arrivals = [c.at for c in legacy_server.commands()]
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(arrivals))  # command: 2/s


def test_without_the_top_level_section_a_handlers_own_block_still_configures_the_client(
    tmp_path: Path, legacy_server: FakeTuyaOpenApi
) -> None:
    """Configurations from before the top-level section keep working, for every handler of
    the project."""
    own = {**FAST_CLIENT, "legacy_signing": True, "lang": "fr"}
    settings, handlers = build(
        tmp_path,
        legacy_server,
        [
            {"type": "action", "name": "first", "rules": [DOOR_OPENS_LIGHT_ON]},
            {"type": "action", "name": "second", "rules": [LIGHT_2_TOO], "openapi": own},
        ],
    )

    async def scenario(h: Harness) -> None:
        assert handlers[0].client is handlers[1].client
        h.source.publish(*door("door-1", 1), key="door-1")
        await settled(h, 1)

    in_harness(settings, handlers, scenario)
    assert legacy_server.codes() == [None] * 3
    assert {r.headers["lang"] for r in legacy_server.received} == {"fr"}


def test_a_handler_block_that_differs_from_the_top_level_section_is_a_config_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as raised:
        build(
            tmp_path,
            None,
            [
                {"type": "log"},
                {"type": "action", "rules": [DOOR_OPENS_LIGHT_ON], "openapi": {"lang": "zh"}},
            ],
            openapi={"lang": "de"},
        )
    [(path, message)] = raised.value.problems
    assert path == "handlers[1].openapi"
    assert message.startswith("differs from the top-level openapi: section")
    assert "share one OpenAPI client" in message and "leave openapi: out" in message


# -- configuration -----------------------------------------------------------------------------


def test_config_errors_name_the_key_path(tmp_path: Path) -> None:
    bad = [
        {"type": "action", "name": "a"},
        {
            "type": "action",
            "name": "b",
            "rules": [
                {"when": {"protocl": 4}, "then": {"command": {"code": "s", "value": 1}}},
                {"when": {}, "then": {"command": {"code": "s"}}},
                {"when": {}, "then": {"command": {"code": "s", "value": "{status}"}}},
                {
                    "when": {},
                    "then": {"call": {"method": "GET", "path": "/v1.0/x/{evnt.device_id}"}},
                },
                {"when": [], "then": [], "cooldown": "soon"},
                {"when": {}, "then": {"call": {"method": "GET", "path": "v1.0/x"}}},
                {"when": {}, "then": {"command": {"code": "s", "value": 1}}, "per": "home"},
            ],
            "openapi": {"rate_limits": {"command": 0}, "legacy": True},
        },
    ]
    settings = settings_from_mapping(
        {
            "tuya": {"access_id": v.ACCESS_ID, "access_secret": v.ACCESS_SECRET, "region": "eu"},
            "handlers": bad,
        },
        {},
    )
    with pytest.raises(ConfigError) as raised:
        routes_of(settings)
    problems = dict(raised.value.problems)
    for path in (
        "handlers[0].rules",
        "handlers[1].rules[0].when[0].protocl",
        "handlers[1].rules[1].then[0].command",
        "handlers[1].rules[2].then[0].command.value",
        "handlers[1].rules[3].then[0].call.path",
        "handlers[1].rules[4].when",
        "handlers[1].rules[4].then",
        "handlers[1].rules[4].cooldown",
        "handlers[1].rules[5].then[0].call.path",
        "handlers[1].rules[6].per",
        "handlers[1].openapi.rate_limits.command.rate",
        "handlers[1].openapi.legacy",
    ):
        assert path in problems, (path, sorted(problems))
    assert "evnt" in problems["handlers[1].rules[3].then[0].call.path"]


def test_the_commented_example_in_config_example_yaml_is_valid(tmp_path: Path) -> None:
    """The example block is commented out (it needs a real project); uncommented, it must
    validate and build."""
    text = (ROOT / "config.example.yaml").read_text()
    lines = text[text.index("  # - type: action") :].splitlines()
    block = list(itertools.takewhile(lambda line: line.startswith("  # "), lines))
    uncommented = "\n".join(line.replace("  # ", "  ", 1) for line in block)
    handlers = yaml.safe_load("handlers:\n" + uncommented)["handlers"]
    assert [h["type"] for h in handlers] == ["action"]
    _, [handler] = build(tmp_path, None, handlers)
    assert isinstance(handler, ActionHandler)
    assert [rule.name for rule in handler.rules] == ["door-opens-light-on", "offline-notify"]


def test_the_example_in_docs_actions_md_is_valid(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "actions.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    [example] = [block for block in blocks if "type: action" in block]
    handlers = yaml.safe_load(example)["handlers"]
    _, built = build(tmp_path, None, handlers)
    [action_handler] = [h for h in built if isinstance(h, ActionHandler)]
    assert [rule.name for rule in action_handler.rules] == ["door-opens-light-on", "offline-notify"]


# -- templating --------------------------------------------------------------------------------


def scope_for(document: dict[str, Any], protocol: int = 4) -> Scope:
    event = build_event(document, protocol)
    return Scope(event, Delivery(b"", {}, "mem:1:0"), "rule-x")


STATUS = {
    "dataId": "d-1",
    "devId": "dev1",
    "productKey": "pk",
    "status": [
        {"code": "switch_1", "value": True, "t": 1700000000000, "1": "true"},
        {"code": "temp", "value": 215},
        {"code": "colour", "value": {"h": 10, "s": 20}},
    ],
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{status.switch_1}", True),
        ("{status.temp}", 215),
        ("{status.colour}", {"h": 10, "s": 20}),
        (
            "t={status.temp} on={status.switch_1} c={status.colour}",
            't=215 on=true c={"h":10,"s":20}',
        ),
        ("{event.device_id}/{event.data_id}/{event.kind}", "dev1/d-1/status"),
        ("{ event.protocol }", 4),
        ("{dp.code}={dp.value} (dp {dp.id})", "switch_1=true (dp 1)"),
        ("{document.status.1.code}", "temp"),
        ("{rule.name}", "rule-x"),
        ("{{literal}} {event.id}", "{literal} d-1"),
        ({"a": ["{status.temp}", 1, None]}, {"a": [215, 1, None]}),
        ({"$json": {"v": "{status.switch_1}"}}, '{"v":true}'),
    ],
)
def test_templates_render_values_with_their_types(template: Any, expected: Any) -> None:
    assert compile_template(template)(scope_for(STATUS)) == expected


def test_templates_read_biz_data_and_fail_loudly_on_missing_values() -> None:
    document = {"devId": "p", "bizCode": "nameUpdate", "bizData": {"name": "Lamp", "n": {"x": 1}}}
    scope = scope_for(document, protocol=20)
    assert compile_template("{biz_data.name}: {biz_data.n.x}")(scope) == "Lamp: 1"
    for missing in ("{biz_data.nope}", "{status.switch_1}", "{dp.code}", "{event.data_id}"):
        with pytest.raises(TemplateError, match=re.escape(missing)):
            compile_template(missing)(scope)


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{evt.device_id}", "unknown placeholder"),
        ("{event.devid}", "event.device_id"),
        ("{status}", "needs a name"),
        ("{status.a.b}", "one data-point code"),
        ("open { brace", "unmatched"),
        ("close } brace", "unmatched"),
        ({"$json": 1, "other": 2}, "no other key"),
    ],
)
def test_template_mistakes_are_found_at_config_time(template: Any, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        compile_template(template)


# -- the path guard: an event's values never steer a request to another path --------------------

# Values an event may carry (devId is the device's, or whoever forged the report) that would
# change the path once a client, proxy or server normalises or decodes it.
HOSTILE_SEGMENTS = [
    ".",
    "..",
    "...",
    "%2e%2e",
    "%2E",
    ".%2e",
    "a\\b",
    "..\\x",
    "..;",
    "a;b",
    " ",
    "a b",
    "\t",
    "é",
    "a\x00b",
]
PATH_FORMS = [
    {"command": {"code": "switch_1", "value": True}},  # device_id: "{event.device_id}"
    {"call": {"method": "GET", "path": "/v1.0/devices/{event.device_id}/logs"}},
    {"call": {"method": "GET", "path": "/v1.0/devices/.{event.device_id}/logs"}},
]


@pytest.mark.parametrize("device", HOSTILE_SEGMENTS)
def test_a_device_id_that_would_change_the_path_never_reaches_the_api(
    tmp_path: Path, server: FakeTuyaOpenApi, device: str
) -> None:
    rules = [{"name": f"form{i}", "when": {}, "then": step} for i, step in enumerate(PATH_FORMS)]
    settings, handlers = build(tmp_path, server, [action(*rules)])

    async def scenario(h: Harness) -> list[Any]:
        h.source.publish(*door(device, 1), key="door")
        await settled(h, 1)
        return h.store.list()

    [record] = in_harness(settings, handlers, scenario)
    assert record.reason == "template"  # dead-lettered at once, every rule refused
    assert all(f"rule form{i}: " in record.message for i in range(len(PATH_FORMS)))
    assert record.message.count("path") >= len(PATH_FORMS)
    assert [r.path for r in server.received if not r.path.startswith("/v1.0/token")] == []


@pytest.mark.parametrize(
    ("step", "key"),
    [
        ({"call": {"method": "GET", "path": "/v1.0/devices/../users"}}, "call.path"),
        ({"call": {"method": "GET", "path": "/v1.0//devices"}}, "call.path"),
        ({"call": {"method": "GET", "path": "/v1.0/%2e%2e/users"}}, "call.path"),
        ({"call": {"method": "GET", "path": "/v1.0/a\\b"}}, "call.path"),
        ({"call": {"method": "GET", "path": "/v1.0/..;/users"}}, "call.path"),
        ({"call": {"method": "GET", "path": "/v1.0/devices/"}}, "call.path"),
        ({"command": {"device_id": "..", "code": "c", "value": 1}}, "command.device_id"),
        ({"command": {"device_id": ".", "code": "c", "value": 1}}, "command.device_id"),
        ({"command": {"device_id": "%2e%2e", "code": "c", "value": 1}}, "command.device_id"),
        ({"command": {"device_id": "a b", "code": "c", "value": 1}}, "command.device_id"),
        (
            {"command": {"path": "/v1.0/../{device_id}/commands", "code": "c", "value": 1}},
            "command.path",
        ),
    ],
)
def test_a_path_that_could_reach_another_one_is_a_config_error(
    tmp_path: Path, step: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build(tmp_path, None, [action({"when": {}, "then": step})])
    problems = dict(caught.value.problems)
    assert list(problems) == [f"handlers[0].rules[0].then[0].{key}"], problems


@hypothesis.settings(max_examples=300, deadline=None)
@given(segment=st.text(max_size=6))
def test_every_path_the_guard_accepts_is_sent_exactly_as_signed(segment: str) -> None:
    """Whatever a value holds: if the guard lets the path through, the HTTP client (yarl, as the
    OpenAPI client uses it) sends exactly that path, which is the one that was signed."""
    path = f"/v1.0/devices/{segment}/commands"
    if path_problem(path) is None:
        url = URL("https://openapi.example" + path)
        assert url.raw_path == path and url.path == path
        assert segment.strip(".")  # never a dot segment
