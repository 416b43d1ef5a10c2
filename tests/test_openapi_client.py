"""The OpenAPI client against the fake Tuya OpenAPI on 127.0.0.1 (tests/fake_tuya_openapi.py),
which checks every signature and token with its own code and records what it received."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import vectors as v
from tests.fake_tuya_openapi import FakeTuyaOpenApi
from tests.support.metrics import metric_value
from tests.support.ports import free_port
from tests.support.servers import serving
from tuya_events.observability.metrics import Metrics
from tuya_events.openapi.client import Credentials, OpenApiClient, OpenApiOptions
from tuya_events.openapi.errors import SHARED_KEY_HINT, OpenApiError

FAST = {"initial_backoff": 0.01, "max_backoff": 0.05}


@pytest.fixture
def servers() -> Iterator[Callable[..., FakeTuyaOpenApi]]:
    with serving() as start:
        yield lambda **options: start(FakeTuyaOpenApi(v.API_CLIENT_ID, v.API_SECRET, **options))


def client_for(
    url: str, metrics: Metrics | None = None, secret: str = v.API_SECRET, **options: Any
) -> OpenApiClient:
    return OpenApiClient(
        Credentials(v.API_CLIENT_ID, secret, url),
        OpenApiOptions.model_validate({**FAST, **options}),
        metrics=metrics,
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metric_value(metrics.registry, f"tuya_events_{name}", **labels)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_calls_get_a_token_once_and_every_request_is_signed(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    server = servers()
    metrics = Metrics()

    async def scenario() -> tuple[Any, Any]:
        async with client_for(server.url, metrics) as client:
            sent = await client.send_commands("d1", [{"code": "switch_1", "value": True}])
            status = await client.request("GET", "/v1.0/iot-03/devices/d1/status")
            return sent, status

    sent, status = run(scenario())
    assert sent is True
    assert status == [{"code": "switch_1", "value": True}]
    assert server.codes() == [None, None, None]  # token, command, query: all signatures good
    token_call, command, query = server.received
    assert token_call.path == "/v1.0/token" and token_call.query == [("grant_type", "1")]
    assert command.json == {"commands": [{"code": "switch_1", "value": True}]}
    assert command.headers["access_token"] == query.headers["access_token"]
    assert command.headers["nonce"] != query.headers["nonce"]
    assert command.headers["lang"] == "en"
    assert sample(metrics, "openapi_requests_total", endpoint_class="command", outcome="success")
    assert sample(metrics, "openapi_requests_total", endpoint_class="query", outcome="success")
    assert sample(metrics, "openapi_token_refreshes_total", outcome="success") == 1
    assert sample(metrics, "openapi_request_duration_seconds_count", endpoint_class="query") == 1
    # Declared at 0 from the start, so an alert on increase() sees the first failure.
    refresh_failures = metrics.registry.get_sample_value(
        "tuya_events_openapi_token_refreshes_total", {"outcome": "failure"}
    )
    assert refresh_failures == 0.0


def test_concurrent_first_calls_share_one_token_fetch(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    server = servers()

    async def scenario() -> None:
        async with client_for(server.url, rate_limits={"query": 1000}) as client:
            await asyncio.gather(
                *(client.request("GET", f"/v1.0/iot-03/devices/d{i}") for i in range(20))
            )

    run(scenario())
    assert len(server.requests("/v1.0/token")) == 1
    assert server.codes().count(None) == 21


def test_token_is_refreshed_ahead_of_expiry_without_a_single_1010(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    """Tokens live 2 s; with a 0.5 s margin the client refreshes at 1.5 s, every time."""
    server = servers(token_ttl=2)
    metrics = Metrics()

    async def scenario() -> None:
        async with client_for(server.url, metrics, refresh_margin=0.5) as client:
            deadline = time.monotonic() + 3.4
            while time.monotonic() < deadline:
                await client.request("GET", "/v1.0/iot-03/devices/d1")
                await asyncio.sleep(0.1)

    run(scenario())
    assert 1010 not in server.codes() and 1011 not in server.codes()
    assert len(server.requests("/v1.0/token", code=None)) >= 3  # a get, then refreshes
    refreshes = [r for r in server.requests("/v1.0/token/") if r.code is None]
    assert len(refreshes) >= 2  # with the refresh token, not a new grant
    assert sample(metrics, "openapi_token_refreshes_total", outcome="success") >= 3


def test_calls_queued_behind_the_limiter_while_the_token_is_refreshed_use_the_new_one(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    """Twelve commands at once queue for 2.75 s; the token (2 s, refreshed at 1 s) is replaced
    meanwhile. A call must take its token when it leaves, not when it starts waiting."""
    server = servers(token_ttl=2)

    async def scenario() -> None:
        async with client_for(server.url, refresh_margin=1.5) as client:
            await asyncio.gather(
                *(
                    client.send_commands(f"d{i}", [{"code": "switch_1", "value": True}])
                    for i in range(12)
                )
            )

    run(scenario())
    assert len(server.requests("/v1.0/token/", code=None)) >= 1  # refreshed mid-queue
    assert [r.code for r in server.requests("/commands")] == [None] * 12  # no 1010, no 1011


def test_an_expired_token_gets_1010_then_a_new_token_and_the_call_is_sent_once_more(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    server = servers()
    metrics = Metrics()

    async def scenario() -> Any:
        async with client_for(server.url, metrics) as client:
            await client.request("GET", "/v1.0/iot-03/devices/d1")
            server.expire_tokens()  # our clock still says it is good: only the server knows
            return await client.send_commands("d1", [{"code": "switch_1", "value": False}])

    assert run(scenario()) is True
    commands = server.requests("/commands")
    assert [r.code for r in commands] == [1010, None]
    assert commands[0].headers["access_token"] != commands[1].headers["access_token"]
    assert len(server.requests("/v1.0/token", code=None)) == 2
    assert server.commands()[0].json["commands"][0]["value"] is False
    assert sample(metrics, "openapi_requests_total", endpoint_class="command", outcome="1010") == 1


def test_a_token_taken_by_another_process_is_replaced_and_the_call_retried_once(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    server = servers()

    async def scenario() -> Any:
        async with client_for(server.url) as client:
            await client.request("GET", "/v1.0/iot-03/devices/d1")
            server.issue_token()  # another process with the same key pair gets a token
            return await client.request("GET", "/v1.0/iot-03/devices/d1/status")

    run(scenario())
    assert [r.code for r in server.requests("/status")] == [1011, None]


def test_tokens_taken_again_and_again_are_noticed(servers: Callable[..., FakeTuyaOpenApi]) -> None:
    """Each time another process takes a token, ours is rejected before its expiry: the calls
    still succeed (one retry each), and the client counts it for the shared-key warning."""
    server = servers()

    async def scenario() -> list[bool]:
        noticed = []
        async with client_for(server.url) as client:
            await client.request("GET", "/v1.0/iot-03/devices/d1")
            for _ in range(3):
                server.issue_token()
                await client.request("GET", "/v1.0/iot-03/devices/d1")
                noticed.append(client.tokens.keeps_being_invalidated())
        return noticed

    assert run(scenario()) == [False, False, True]
    assert [r.code for r in server.requests("/devices/d1")] == [None, *[1011, None] * 3]


def test_tokens_rejected_again_after_renewal_say_two_processes_may_share_the_key(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    server = servers()
    server.answer(1011, times=2, path="/devices/d1")

    async def scenario() -> None:
        async with client_for(server.url) as client:
            await client.request("GET", "/v1.0/iot-03/devices/d1")

    with pytest.raises(OpenApiError) as raised:
        run(scenario())
    error = raised.value
    assert error.code == 1011 and error.hint == SHARED_KEY_HINT
    assert "two processes" in str(error) and error.tid
    assert len(server.requests("/devices/d1")) == 2  # the call, and exactly one retry
    assert len(server.requests("/v1.0/token")) == 2


def test_a_wrong_secret_is_1004_with_a_hint_and_is_not_retried(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    server = servers()

    async def scenario() -> None:
        async with client_for(server.url, secret="x" * 32) as client:
            await client.send_commands("d1", [{"code": "switch_1", "value": True}])

    with pytest.raises(OpenApiError) as raised:
        run(scenario())
    error = raised.value
    assert error.code == 1004 and error.configuration and not error.retryable
    assert "access_secret" in str(error) and "region" in str(error) and "--dry-run" in str(error)
    assert len(server.received) == 1  # the token call, once
    assert "x" * 32 not in str(error)


def test_clock_skew_is_1013_and_says_to_fix_the_clock(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    server = servers(clock_offset=3600)

    async def scenario() -> None:
        async with client_for(server.url) as client:
            await client.request("GET", "/v1.0/iot-03/devices/d1")

    with pytest.raises(OpenApiError) as raised:
        run(scenario())
    assert raised.value.code == 1013 and "clock" in str(raised.value)
    assert raised.value.configuration and len(server.received) == 1


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (1106, ("Link App Account", "API family")),
        (28841105, ("not subscribed", "Service API")),
        (28841002, ("expired", "Service API")),
    ],
)
def test_configuration_problems_fail_at_once_with_what_to_check(
    servers: Callable[..., FakeTuyaOpenApi], code: int, words: tuple[str, ...]
) -> None:
    if code == 1106:
        server = servers(linked_devices={"d1"})  # d2 is not linked to the project
        path = "/v1.0/iot-03/devices/d2/commands"
    else:
        server = servers()
        server.answer(code, times=None, path="/commands")
        path = "/v1.0/iot-03/devices/d1/commands"

    async def scenario() -> None:
        async with client_for(server.url, max_attempts=5) as client:
            await client.request("POST", path, body={"commands": [{"code": "a", "value": 1}]})

    with pytest.raises(OpenApiError) as raised:
        run(scenario())
    error = raised.value
    assert error.code == code and error.configuration and not error.retryable
    for word in words:
        assert word in str(error)
    assert len(server.requests("/commands")) == 1


def test_1110_1111_and_http_5xx_are_retried_until_the_call_succeeds(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    server = servers()
    server.answer(1111, times=1, path="/status")
    server.answer(None, times=1, path="/status", http_status=502)
    server.answer(1110, times=1, path="/status")
    metrics = Metrics()

    async def scenario() -> Any:
        async with client_for(server.url, metrics, max_attempts=4) as client:
            return await client.request("GET", "/v1.0/iot-03/devices/d1/status")

    assert run(scenario()) == []
    statuses = server.requests("/status")
    assert [(r.code, r.http_status) for r in statuses] == [
        (1111, 200),
        (None, 502),
        (1110, 200),
        (None, 200),
    ]
    for outcome in ("1111", "http_5xx", "1110", "success"):
        assert sample(metrics, "openapi_requests_total", endpoint_class="query", outcome=outcome), (
            outcome
        )


def test_retries_stop_after_max_attempts_and_the_error_says_retryable(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    server = servers()
    server.answer(1111, times=None, path="/status")

    async def scenario() -> None:
        async with client_for(server.url, max_attempts=3) as client:
            await client.request("GET", "/v1.0/iot-03/devices/d1/status")

    with pytest.raises(OpenApiError) as raised:
        run(scenario())
    assert raised.value.code == 1111 and raised.value.retryable
    assert not raised.value.infrastructure
    assert len(server.requests("/status")) == 3


def test_an_unreachable_host_is_a_retryable_infrastructure_error() -> None:
    metrics = Metrics()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    async def scenario() -> None:
        async with client_for(url, metrics, max_attempts=2) as client:
            await client.request("GET", "/v1.0/iot-03/devices/d1")

    with pytest.raises(OpenApiError) as raised:
        run(scenario())
    error = raised.value
    assert error.reason == "network_error" and error.infrastructure and error.retryable
    assert error.code is None and "tuya.region" in str(error)
    labels = {"endpoint_class": "token", "outcome": "network_error"}
    assert sample(metrics, "openapi_requests_total", **labels) == 2
    assert sample(metrics, "openapi_token_refreshes_total", outcome="failure") == 2


def test_a_burst_of_commands_is_spaced_to_four_per_second(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    server = servers()
    metrics = Metrics()

    async def scenario() -> float:
        async with client_for(server.url, metrics, max_attempts=1) as client:
            await client.request("GET", "/v1.0/iot-03/devices/d0")  # token first
            started = time.monotonic()
            await asyncio.gather(
                *(
                    client.send_commands(f"d{i}", [{"code": "switch_1", "value": True}])
                    for i in range(9)
                )
            )
            return time.monotonic() - started

    elapsed = run(scenario())
    assert 1110 not in server.codes()
    arrivals = [r.at for r in server.commands()]
    assert len(arrivals) == 9
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(arrivals))
    assert elapsed >= 2.0  # 8 gaps of 250 ms
    waits = sample(metrics, "openapi_rate_limit_wait_seconds_sum", endpoint_class="command")
    assert sample(metrics, "openapi_rate_limit_wait_seconds_count", endpoint_class="command") == 9
    assert waits >= 0.25 * (1 + 2 + 3 + 4 + 5 + 6 + 7 + 8) - 0.1


def test_the_fake_server_answers_1110_to_a_burst_the_limiter_would_have_spaced(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    """The control for the test above: without the limit, the server notices."""
    server = servers()

    async def scenario() -> list[Any]:
        async with client_for(server.url, rate_limits={"command": 1000}, max_attempts=1) as c:
            return await asyncio.gather(
                *(c.send_commands(f"d{i}", [{"code": "s", "value": 1}]) for i in range(9)),
                return_exceptions=True,
            )

    outcomes = run(scenario())
    refused = [o for o in outcomes if isinstance(o, OpenApiError)]
    assert refused and all(o.code == 1110 and o.retryable for o in refused)
    assert len(server.commands()) == 4


def test_legacy_signing_for_old_projects(servers: Callable[..., FakeTuyaOpenApi]) -> None:
    legacy_server = servers(legacy=True)

    async def call(legacy: bool) -> Any:
        async with client_for(legacy_server.url, legacy_signing=legacy) as client:
            return await client.send_commands("d1", [{"code": "switch_1", "value": True}])

    assert run(call(True)) is True
    assert "nonce" not in legacy_server.received[-1].headers
    with pytest.raises(OpenApiError) as raised:
        run(call(False))
    assert raised.value.code == 1004


def test_query_values_with_reserved_characters_are_signed_unencoded_and_sent_encoded(
    servers: Callable[..., FakeTuyaOpenApi],
) -> None:
    server = servers()
    value = "a b&c=d+é/?%41"

    async def scenario() -> None:
        async with client_for(server.url) as client:
            await client.request(
                "GET", "/v1.0/iot-03/devices/d1?zz=last", query={"name": value, "a": "1"}
            )

    run(scenario())
    [request] = server.requests("/devices/d1")
    assert request.code is None  # the server recomputed the sign from the decoded values
    assert sorted(request.query) == [("a", "1"), ("name", value), ("zz", "last")]
