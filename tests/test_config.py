"""Configuration: interpolation, secret files, every problem at once with its key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests import vectors as v
from tests.support.paths import ROOT
from tests.support.settings import routes_of
from tuya_events.config import ConfigError, load_settings
from tuya_events.config.loader import find_config_file, settings_from_mapping
from tuya_events.config.render import MASK, render_effective_config

MINIMAL = {"tuya": {"access_id": v.ACCESS_ID, "access_secret": v.ACCESS_SECRET, "region": "eu"}}


def problems_of(tree: object, environ: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(tree, environ or {})
    return dict(caught.value.problems)


def test_minimal_config_gets_safe_defaults() -> None:
    settings = settings_from_mapping(MINIMAL, {})
    assert settings.tuya.topic == f"persistent://{v.ACCESS_ID}/out/event"
    assert settings.tuya.subscription == f"{v.ACCESS_ID}-sub"
    assert settings.tuya.resolved_pulsar_url == "pulsar+ssl://mqe.tuyaeu.com:7285/"
    assert settings.tuya.resolved_openapi_url == "https://openapi.tuyaeu.com"
    assert settings.tls.verify_certificates is True
    assert settings.tuya.sign_check == "log"
    assert settings.handler_names() == ["log"]


def test_test_environment_and_suffix_and_explicit_urls() -> None:
    tree = {
        "tuya": {
            "access_id": "abc",
            "access_secret": v.ACCESS_SECRET,
            "pulsar_url": "pulsar+ssl://mqe.tuyasg.example:7285/",
            "openapi_url": "https://openapi-sg.example",
            "environment": "test",
            "subscription_suffix": "mine",
        }
    }
    settings = settings_from_mapping(tree, {})
    assert settings.tuya.topic == "persistent://abc/out/event-test"
    assert settings.tuya.subscription == "abc-mine"
    assert settings.tuya.resolved_pulsar_url == "pulsar+ssl://mqe.tuyasg.example:7285/"


def test_environment_interpolation_with_defaults_and_escape() -> None:
    tree = {
        "tuya": {"access_id": "${ID}", "access_secret": "${SECRET}", "region": "${REGION:-us}"},
        "dead_letter": {"path": "$${literal}/${STATE:-/var/lib/x}/dl.sqlite3"},
    }
    settings = settings_from_mapping(tree, {"ID": "id1", "SECRET": v.ACCESS_SECRET})
    assert settings.tuya.access_id == "id1"
    assert settings.tuya.access_secret.get_secret_value() == v.ACCESS_SECRET
    assert settings.tuya.region == "us"
    assert settings.dead_letter.path == "${literal}//var/lib/x/dl.sqlite3"


def test_secret_file_indirection(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(v.ACCESS_SECRET + "\n")
    tree = {"tuya": {"access_id": "a", "access_secret_file": str(secret_file), "region": "in"}}
    settings = settings_from_mapping(tree, {})
    assert settings.tuya.access_secret.get_secret_value() == v.ACCESS_SECRET


def test_all_problems_are_reported_at_once_with_key_paths(tmp_path: Path) -> None:
    tree = {
        "tuya": {
            "access_id": "",
            "access_secret_file": str(tmp_path / "missing"),
            "region": "mars",
            "environment": "staging",
            "typo_key": 1,
        },
        "consumer": {"max_in_flight": 0, "shutdown_timeout": "soon"},
        "http": {"listen": "9464"},
        "handlers": [{"type": "log"}, {"name": "log", "type": "webhook"}, {"name": "x"}],
    }
    problems = problems_of(tree)
    assert set(problems) >= {
        "tuya.access_id",
        "tuya.access_secret_file",
        "tuya.region",
        "tuya.environment",
        "tuya.typo_key",
        "consumer.max_in_flight",
        "consumer.shutdown_timeout",
        "http.listen",
        "handlers[2].type",
    }
    assert "cannot read" in problems["tuya.access_secret_file"]
    assert "Extra inputs" in problems["tuya.typo_key"]


def test_cross_key_rules() -> None:
    tree = {
        "tuya": {"access_id": "a", "access_secret": v.ACCESS_SECRET},
        "tls": {"verify": False, "ca_file": "/nonexistent/ca.pem"},
        "retry": {"initial_backoff": "2m", "max_backoff": "1m"},
        "handlers": [{"type": "log"}, {"type": "log"}],
    }
    problems = problems_of(tree)
    assert "region" in problems["tuya.region"]
    assert "insecure" in problems["tls.verify"]
    assert "not a file" in problems["tls.ca_file"]
    assert "retry.initial_backoff" in problems
    assert "unique" in problems["handlers[1].name"]


def test_missing_environment_variable_is_named() -> None:
    problems = problems_of({"tuya": {"access_id": "a", "access_secret": "${NOPE}", "region": "eu"}})
    assert problems == {"tuya.access_secret": "environment variable NOPE is not set"}


def test_secrets_never_appear_in_errors(tmp_path: Path) -> None:
    secret = "S3cr3t-value-that-must-not-leak"
    tree = {
        "tuya": {
            "access_id": "a",
            "access_secret": secret,
            "access_secret_file": "/x",
            "region": "no",
        },
        "handlers": [{"type": "webhook", "secret": secret, "secret_file": "/y"}],
    }
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(tree, {})
    assert secret not in caught.value.render()


def test_too_short_secret_is_reported_without_its_value() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(
            {"tuya": {"access_id": "a", "access_secret": "tiny-secret", "region": "eu"}}, {}
        )
    assert "tiny-secret" not in caught.value.render()
    assert "tuya.access_secret" in dict(caught.value.problems)


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("tuya:\n  access_id: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert "line" in caught.value.render() and str(path) in caught.value.render()


def test_config_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no configuration file"):
        find_config_file(None, {})
    (tmp_path / "tuya-events.yaml").write_text("x: 1")
    assert find_config_file(None, {}) == Path("tuya-events.yaml")
    assert find_config_file(None, {"TUYA_EVENTS_CONFIG": "/etc/x.yaml"}) == Path("/etc/x.yaml")
    assert find_config_file("given.yaml", {"TUYA_EVENTS_CONFIG": "/etc/x.yaml"}) == Path(
        "given.yaml"
    )


def test_effective_config_masks_every_secret() -> None:
    tree = {
        **MINIMAL,
        "handlers": [
            {
                "type": "webhook",
                "url": "http://127.0.0.1/x",
                "secret": "whsec_abc",
                "headers": {"Authorization": "Bearer hdrsecret", "X-Team": "ops"},
            },
            {"type": "database", "dsn": "postgresql://user:pgpass@db/tuya"},
        ],
    }
    text = render_effective_config(settings_from_mapping(tree, {}))
    for secret in (v.ACCESS_SECRET, "whsec_abc", "pgpass", "hdrsecret"):
        assert secret not in text
    rendered = yaml.safe_load(text)
    assert rendered["tuya"]["access_secret"] == MASK
    assert rendered["handlers"][1]["dsn"] == f"postgresql://user:{MASK}@db/tuya"
    assert rendered["http"]["listen"] == "127.0.0.1:9464"
    assert rendered["handlers"][0]["headers"] == {"Authorization": MASK, "X-Team": "ops"}


def test_the_top_level_openapi_section() -> None:
    assert settings_from_mapping(MINIMAL, {}).openapi_given is False
    tree = {
        **MINIMAL,
        "openapi": {"legacy_signing": True, "timeout": "2s", "rate_limits": {"command": 1}},
    }
    settings = settings_from_mapping(tree, {})
    assert settings.openapi_given is True
    assert settings.openapi.legacy_signing is True and settings.openapi.timeout == 2.0
    assert settings.openapi.rate_limits["command"].rate == 1
    assert settings.openapi.rate_limits["query"].rate == 50  # a class left out keeps its limit
    rendered = yaml.safe_load(render_effective_config(settings))
    assert rendered["openapi"]["legacy_signing"] is True
    assert rendered["openapi"]["rate_limits"]["query"] == {"rate": 50.0, "burst": 1}


def test_openapi_section_problems_have_key_paths() -> None:
    problems = problems_of(
        {
            **MINIMAL,
            "openapi": {"lang": "e n", "rate_limits": {"command": 0}, "legacy": True},
        }
    )
    for path in (
        "openapi.lang",
        "openapi.rate_limits.command.rate",
        "openapi.legacy",
    ):
        assert path in problems, (path, sorted(problems))
    backoff = problems_of({**MINIMAL, "openapi": {"initial_backoff": "10s"}})
    assert backoff == {"openapi": "initial_backoff must not exceed max_backoff"}


def test_example_config_is_valid_and_documents_every_key() -> None:
    example = ROOT / "config.example.yaml"
    environ = {"TUYA_ACCESS_ID": "exampleid", "TUYA_ACCESS_SECRET": v.ACCESS_SECRET}
    settings = load_settings(example, environ)
    text = example.read_text()
    for section, model in settings:
        if section == "handlers":
            continue
        assert f"\n{section}:" in text
        for key in type(model).model_fields:
            assert f"  {key}:" in text or f"# {key}:" in text or f"#  {key}:" in text, (
                f"{section}.{key}"
            )


def test_every_commented_handler_example_builds(tmp_path: Path) -> None:
    """The commented-out handler examples are documentation: they must stay valid."""

    example = ROOT / "config.example.yaml"
    text = example.read_text().split("\nhandlers:\n", 1)[1]
    yaml_lines = []
    for line in text.splitlines():
        body = line[4:] if line.startswith("  # ") else None
        if body is not None and (body.startswith("- ") or body.startswith("  ")):
            yaml_lines.append("  " + body)
    handlers = yaml.safe_load("handlers:\n" + "\n".join(yaml_lines))["handlers"]
    types = [handler["type"] for handler in handlers]
    assert {"webhook", "pulsar", "database", "action", "log"} <= set(types), types
    secret = tmp_path / "secret"
    secret.write_text("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY" + "\n")
    names = set()
    for index, handler in enumerate(handlers):
        for key in [k for k in handler if k.endswith("_file")]:
            handler[key] = str(secret)  # the example's /run/credentials paths, made real
        if handler["type"] == "database":
            handler["path"] = str(tmp_path / "events.sqlite3")
        handler.setdefault("name", f"{handler['type']}-{index}")
        names.add(handler["name"])
    tree = {**MINIMAL, "handlers": handlers}
    settings = settings_from_mapping(tree, {"STATE_DIRECTORY": str(tmp_path)})
    routes = routes_of(settings)
    assert {route.name for route in routes} == names


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h45m", 6300.0),
        ("2d12h", 216000.0),
        ("1m30s", 90.0),
        ("1s500ms", 1.5),
        ("90", 90.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
    ],
)
def test_durations_may_be_compound(text: str, seconds: float) -> None:
    from tuya_events.config.types import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "45m1h", "1h1h", "1.5h30m", "-5s", "1 h 2"])
def test_malformed_durations_are_refused(text: str) -> None:
    from tuya_events.config.types import parse_duration

    with pytest.raises(ValueError, match="1h45m"):
        parse_duration(text)
