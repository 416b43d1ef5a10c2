"""Read, interpolate, validate: YAML text -> :class:`Settings` or one :class:`ConfigError`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tuya_events.config.errors import ConfigError, key_path
from tuya_events.config.interpolate import interpolate, is_utf8, resolve_secret_files
from tuya_events.config.secrets import secret_values
from tuya_events.config.settings import SECRET_KEYS, Settings, ledger_dsn
from tuya_events.observability.redact import REDACTOR

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


# Bounds on what a configuration file may be: real ones are a few KiB, a few levels deep.
MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 64  # nesting levels; PyYAML composes recursively, so this also bounds its recursion
# Values plus characters, with every alias expanded: anchors for shared handler options stay
# cheap, a "billion laughs" document (a few hundred bytes naming gigabytes) is refused.
MAX_EXPANDED = 2_000_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SHOWN_DEPTH = 8  # key path parts named when refusing deep nesting


class _Refused(Exception):
    """A document we will not build, with the key path where we stopped and why."""

    def __init__(self, path: tuple[str | int, ...], problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, deep nesting, recursive aliases and documents
    whose aliases expand past :data:`MAX_EXPANDED`, each with its key path and line.

    The checks run while composing, on nodes, before anything is built or expanded.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._path: list[str | int] = []
        self._depth = 0
        self._sizes: dict[yaml.Node, int] = {}  # expanded size of every composed node
        self.duplicates: Problems = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        segment = _segment(index)
        if segment is not None:
            self._path.append(segment)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    tuple(self._path[:_SHOWN_DEPTH]),
                    f"{_line(event.start_mark)}nested more than {MAX_DEPTH} levels deep",
                )
            node = super().compose_node(parent, index)
            assert node is not None  # PyYAML's composer always returns one; its stubs say Optional
            if isinstance(event, yaml.AliasEvent):
                self._check_alias(node, event)
            else:
                self._measure(node)
            return node
        finally:
            self._depth -= 1
            if segment is not None:
                self._path.pop()

    def _check_alias(self, node: yaml.Node, event: yaml.AliasEvent) -> None:
        """An alias to a node still being composed would make the document contain itself."""
        if node not in self._sizes:
            raise _Refused(
                tuple(self._path),
                f"{_line(event.start_mark)}alias *{event.anchor} refers to a value that "
                "contains it (a recursive alias)",
            )

    def _measure(self, node: yaml.Node) -> None:
        sizes = self._sizes
        if isinstance(node, yaml.ScalarNode):
            size = 1 + len(node.value)
            if not is_utf8(node.value):  # a "\ud800" escape: no UTF-8 text holds that
                raise _Refused(tuple(self._path), f"{_line(node.start_mark)}not UTF-8 text")
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(sizes[item] for item in node.value)
        else:
            assert isinstance(node, yaml.MappingNode)  # the third and last kind of node
            size = 1 + sum(sizes[key] + sizes[value] for key, value in node.value)
            self._find_duplicates(node)
        if size > MAX_EXPANDED:
            raise _Refused(
                tuple(self._path),
                f"{_line(node.start_mark)}with its aliases expanded this holds more than "
                f"{MAX_EXPANDED:,} values and characters; refused (an alias bomb?)",
            )
        sizes[node] = size

    def _find_duplicates(self, node: yaml.MappingNode) -> None:
        """YAML keeps the last of duplicate keys silently; a typo'd copy must not win."""
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue  # keys merged in by <<: *base may be overridden: that is their use
            key = self.construct_object(key_node)
            try:
                first = first_lines.get(key)
            except TypeError:
                continue  # unhashable: the constructor reports it
            line = key_node.start_mark.line + 1
            if first is None:
                first_lines[key] = line
                continue
            self.duplicates.append(
                (
                    key_path((*self._path, key_node.value)),
                    f"line {line}: duplicate key (first at line {first}); "
                    "YAML would silently keep only the last",
                )
            )


def _segment(index: Any) -> str | int | None:
    """The key path part a node adds: a list index, a mapping key; nothing for a key itself."""
    if isinstance(index, int):
        return index
    if isinstance(index, yaml.ScalarNode):
        key: str = index.value  # a scalar node's value is its text
        return key
    if isinstance(index, yaml.Node):
        return "?"  # a complex key; the constructor refuses it
    return None


def _line(mark: Any) -> str:
    return f"line {mark.line + 1}: " if mark is not None else ""


def _text_of(path: Path) -> str:
    """The file as text, at most :data:`MAX_FILE_BYTES` of UTF-8, whatever its bytes are."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError([("", f"cannot read {path}: {exc.strerror or exc}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        limit = MAX_FILE_BYTES >> 20
        raise ConfigError([("", f"larger than {limit} MiB: not a configuration")], str(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [("", f"line {line}: not UTF-8 text (save the file as UTF-8)")], str(path)
        ) from None


def _compose(text: str) -> Any:
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if loader.duplicates:
            raise ConfigError(loader.duplicates)
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """Where and what, from PyYAML's error, never quoting the file's content."""
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return f"line {line}: character #x{exc.character:04x} is not allowed in YAML"
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or "not valid YAML"
    return f"{where}{problem}"


def parse_document(text: str, source: str | None = None) -> Any:
    """YAML text -> the raw tree, or a :class:`ConfigError` with key paths and lines."""
    try:
        return _compose(text)
    except ConfigError as error:
        raise ConfigError(error.problems, source) from None
    except _Refused as refused:
        raise ConfigError([(key_path(refused.path), refused.problem)], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([("", _yaml_problem(exc, text))], source) from None
    except (RecursionError, MemoryError):
        # A chain of merges (<<) can still recurse inside PyYAML's constructor.
        raise ConfigError([("", "nested too deeply or too large to load")], source) from None


def _read_yaml(path: Path) -> Any:
    return parse_document(_text_of(path), str(path))


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
    websocket_given = tuya.transport == "websocket" and tuya.websocket_url is not None
    if tuya.region is None and tuya.pulsar_url is None and not websocket_given:
        where = "tuya.websocket_url" if tuya.transport == "websocket" else "tuya.pulsar_url"
        problems.append(
            ("tuya.region", f"give a region (cn, us, us-east, eu, eu-west, in) or {where}")
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
    ledger = settings.ledger
    guarded = ledger.handlers
    if ledger.dsn is not None and ledger.database is not None:
        problems.append(("ledger.database", "give the ledger a dsn or a database, not both"))
    elif ledger.database is not None and ledger_dsn(settings) is None:
        problems.append(
            (
                "ledger.database",
                f"no database handler named {ledger.database!r} with a PostgreSQL dsn",
            )
        )
    elif guarded is not None and ledger.dsn is None and ledger.database is None:
        problems.append(("ledger.dsn", "the ledger needs a PostgreSQL dsn (or dsn_file)"))
    for index, name in enumerate(guarded or ()):
        if name not in seen:
            problems.append((f"ledger.handlers[{index}]", f"no handler is named {name!r}"))
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
    resolve_secret_files(tree.get("ledger"), ("dsn",), problems, ("ledger",))
    resolve_secret_files(tree.get("http"), ("token",), problems, ("http",))
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
    """The file's settings; their secrets are registered with the redactor at once, so even a
    traceback printed by a later bug masks them."""
    config_path = find_config_file(path, environ)
    settings = settings_from_mapping(_read_yaml(config_path), environ, source=str(config_path))
    REDACTOR.add(secret_values(settings))
    return settings
