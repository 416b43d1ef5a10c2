"""What ``secret_values`` must find beyond the handlers (issue 15): the ledger's own DSN, secret
values given as lists, and only real headers read as headers."""

from __future__ import annotations

from tests import vectors as v
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.secrets import secret_values

TUYA = {"access_id": v.ACCESS_ID, "access_secret": v.ACCESS_SECRET, "region": "eu"}


def values_of(tree: dict) -> list[str]:
    return secret_values(settings_from_mapping({"tuya": TUYA, **tree}, {}))


def test_the_ledger_dsn_is_collected_whole_and_its_password() -> None:
    dsn = "postgresql://ledger:ledger-pw-1@db.example/events"
    values = values_of({"ledger": {"dsn": dsn}})
    assert dsn in values
    assert "ledger-pw-1" in values
    assert "**********" not in values  # pydantic's placeholder is no secret


def test_a_keyword_ledger_dsn_is_collected_whole() -> None:
    dsn = "host=db.example user=ledger password=kw-ledger-pw"
    assert dsn in values_of({"ledger": {"dsn": dsn}})


def test_no_ledger_adds_nothing() -> None:
    assert values_of({}) == values_of({"ledger": {"database": None}})


def test_each_value_of_a_secret_list_is_collected() -> None:
    handler = {"type": "x.y:Plugin", "token": ["rotating-1", "rotating-2"]}
    values = values_of({"handlers": [handler]})
    assert "rotating-1" in values and "rotating-2" in values


def test_only_headers_are_read_as_headers() -> None:
    # A mapping of columns happens to use header-like names: its values are not credentials.
    handler = {
        "type": "x.y:Plugin",
        "columns": {"Authorization": "auth_column", "Cookie": "cookie_column"},
        "headers": {"Authorization": "Bearer real-bearer-1"},
    }
    values = values_of({"handlers": [handler]})
    assert "real-bearer-1" in values
    assert "auth_column" not in values and "cookie_column" not in values
