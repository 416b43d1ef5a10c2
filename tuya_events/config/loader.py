"""Read, interpolate, validate: YAML text -> :class:`Settings` or one :class:`ConfigError`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tuya_events.config.errors import ConfigError
from tuya_events.config.interpolate import interpolate, key_path, resolve_secret_files
from tuya_events.config.settings import SECRET_KEYS, Settings

CONFIG_ENV = "TUYA_EVENTS_CONFIG"
SEARCH_PATH = (
    Path("tuya-events.yaml"),
    Path("~/.config/tuya-events/config.yaml"),
    Path("/etc/tuya-events/config.yaml"),
)

Problems = list[tuple[str, str]]


def find_config_file(explicit: str | Path | None, environ: Mapping[str, str] = os.environ) -> Path:
    """``-c`` first, then ``$TUYA_EVENTS_CONFIG``, then the search path, first match wins."""
    chosen = explicit or environ.get(CONFIG_ENV)
    if chosen:
        return Path(chosen).expanduser()
    for candidate in SEARCH_PATH:
        if candidate.expanduser().is_file():
            return candidate.expanduser()
    searched = ", ".join(str(path) for path in SEARCH_PATH)
    raise ConfigError(
        [("", f"no configuration file given (-c FILE or ${CONFIG_ENV}); searched {searched}")]
    )


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read {path}: {exc.strerror or exc}")]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError([("", f"{where}{problem}")], source=str(path)) from None


def _validation_problems(error: ValidationError) -> Problems:
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        problems.append((key_path(tuple(item["loc"])), message))
    return problems


def _semantic_problems(settings: Settings) -> Problems:
    """Rules across keys, reported with the key a user should change."""
    problems: Problems = []
    tuya = settings.tuya
    if tuya.region is None and tuya.pulsar_url is None:
        problems.append(
            ("tuya.region", "give a region (cn, us, us-east, eu, eu-west, in) or tuya.pulsar_url")
        )
    if not settings.tls.verify and not settings.tls.insecure:
        problems.append(
            ("tls.verify", "turning verification off needs tls.insecure: true, stated explicitly")
        )
    if settings.tls.ca_file and not Path(settings.tls.ca_file).is_file():
        problems.append(("tls.ca_file", f"{settings.tls.ca_file} is not a file"))
    if settings.retry.initial_backoff > settings.retry.max_backoff:
        problems.append(("retry.initial_backoff", "must not exceed retry.max_backoff"))
    seen: dict[str, int] = {}
    for index, name in enumerate(settings.handler_names()):
        if name in seen:
            problems.append(
                (
                    f"handlers[{index}].name",
                    f"{name!r} is used by handlers[{seen[name]}] too; give each a unique name",
                )
            )
        seen.setdefault(name, index)
    return problems


def settings_from_mapping(
    tree: Any, environ: Mapping[str, str] = os.environ, source: str | None = None
) -> Settings:
    """Validate an already-parsed document; every problem is collected before raising."""
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(
            [("", "the file must hold a mapping of sections (tuya:, handlers:, ...)")], source
        )
    problems: Problems = []
    tree = interpolate(tree, environ, problems)
    resolve_secret_files(tree.get("tuya"), ("access_secret",), problems, ("tuya",))
    handlers = tree.get("handlers")
    if isinstance(handlers, list):
        for index, handler in enumerate(handlers):
            resolve_secret_files(handler, SECRET_KEYS, problems, ("handlers", index))
    settings = None
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as error:
        reported = {path for path, _ in problems}
        problems += [item for item in _validation_problems(error) if item[0] not in reported]
    if settings is not None:
        problems += _semantic_problems(settings)
    if problems:
        raise ConfigError(problems, source)
    assert settings is not None
    return settings


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] = os.environ
) -> Settings:
    config_path = find_config_file(path, environ)
    return settings_from_mapping(_read_yaml(config_path), environ, source=str(config_path))
