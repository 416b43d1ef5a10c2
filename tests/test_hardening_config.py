"""Bad configuration files, provoked for real: each ends in exit 78 naming the key, never a
traceback, never a secret (issue 12, "Bad configuration")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import vectors as v
from tests.support.paths import ROOT
from tests.support.settings import routes_of
from tuya_events.config import ConfigError, load_settings
from tuya_events.config.errors import key_path
from tuya_events.config.interpolate import MAX_INTERPOLATED
from tuya_events.config.loader import MAX_DEPTH, parse_document, settings_from_mapping

SECRET = v.ACCESS_SECRET
HEAD = f"tuya:\n  access_id: a\n  access_secret: {SECRET}\n  region: eu\n"
# "Billion laughs": about 400 bytes that name 9**9 strings.
ALIAS_BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def check_config(config: Path, env: dict[str, Any] | None = None) -> subprocess.CompletedProcess:
    """``python -m tuya_events.cli.main check-config -c FILE``, as an operator runs it."""
    environ: dict[Any, Any] = {k: val for k, val in os.environ.items() if not k.startswith("TUYA")}
    environ["PYTHONPATH"] = str(config.parent)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tuya_events.cli.main", "check-config", "-c", config],
        capture_output=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
    )


def assert_refused(result: subprocess.CompletedProcess, key: str, *words: str) -> str:
    stderr = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 78, stderr
    assert "Traceback" not in stderr, stderr
    assert f"\n  {key}" in stderr, stderr
    for word in words:
        assert word in stderr, stderr
    assert SECRET not in stderr and result.stdout == b""
    return stderr


# -- every bad file: exit 78 naming the key ------------------------------------------------------


def _bytes_config(tmp: Path) -> dict[str, Any]:
    (tmp / "config.yaml").write_bytes((HEAD + "# caf\xe9 in Latin-1\n").encode("latin-1"))
    return {}


def _secret_file(content: bytes, handler: bool = False) -> Callable[[Path], dict[str, Any]]:
    def write(tmp: Path) -> dict[str, Any]:
        (tmp / "secret").write_bytes(content)
        if handler:
            text = HEAD + "handlers:\n  - type: webhook\n    url: http://127.0.0.1:9/x\n"
            text += f"    secret_file: {tmp / 'secret'}\n"
        else:
            text = f"tuya:\n  access_id: a\n  access_secret_file: {tmp / 'secret'}\n  region: eu\n"
        (tmp / "config.yaml").write_text(text)
        return {}

    return write


def _text(text: str, env: dict[str, Any] | None = None) -> Callable[[Path], dict[str, Any]]:
    def write(tmp: Path) -> dict[str, Any]:
        (tmp / "config.yaml").write_text(text)
        return env or {}

    return write


def _plugin(source: str, type_name: str) -> Callable[[Path], dict[str, Any]]:
    def write(tmp: Path) -> dict[str, Any]:
        (tmp / "plugin.py").write_text(source.replace("MARKER", repr(str(tmp / "called"))))
        (tmp / "config.yaml").write_text(HEAD + f"handlers:\n  - type: {type_name}\n")
        return {}

    return write


DEEP = "[" * 10_000 + "]" * 10_000
BAD_FILES: dict[str, tuple[Callable[[Path], dict[str, Any]], str, tuple[str, ...]]] = {
    "config not UTF-8": (_bytes_config, "(top level)", ("line 5", "not UTF-8")),
    "secret file not UTF-8": (
        _secret_file(b"\xff\xfe" + SECRET.encode("utf-16-le")),
        "tuya.access_secret_file",
        ("not UTF-8",),
    ),
    "handler secret file not UTF-8": (
        _secret_file(b"\x80" + SECRET.encode(), handler=True),
        "handlers[0].secret_file",
        ("not UTF-8",),
    ),
    "secret file far too large": (
        _secret_file(b"x" * (1 << 20)),
        "tuya.access_secret_file",
        ("larger than",),
    ),
    "deeply nested value": (
        _text(HEAD + f"handlers:\n  - type: log\n    x: {DEEP}\n"),
        "handlers[0].x[0][0]",
        ("line 7", f"more than {MAX_DEPTH} levels"),
    ),
    "deeply nested document": (_text(DEEP), "[0][0]", (f"more than {MAX_DEPTH} levels",)),
    "alias bomb": (_text(HEAD + ALIAS_BOMB), "f", ("alias bomb",)),
    "recursive alias": (
        _text(HEAD + "handlers: &loop\n  - type: log\n    again: *loop\n"),
        "handlers[0].again",
        ("recursive alias",),
    ),
    "duplicate key": (
        _text(HEAD + "  region: us\n"),
        "tuya.region",
        ("line 5", "first at line 4", "duplicate key"),
    ),
    "duplicate key in a flow mapping": (
        _text(HEAD + "handlers:\n  - {type: log, level: info, level: debug}\n"),
        "handlers[0].level",
        ("duplicate key",),
    ),
    "lone surrogate escape": (
        _text(
            HEAD + "handlers:\n  - type: webhook\n    url: http://127.0.0.1:9/x\n"
            '    secret: "\\ud800 half a surrogate pair"\n'
        ),
        "handlers[0].secret",
        ("line 8", "not UTF-8"),
    ),
    "NUL character": (_text(HEAD + "x: a\0b\n"), "(top level)", ("line 5", "#x0000")),
    "file far too large": (_text(HEAD + "#" * (1 << 20)), "(top level)", ("larger than",)),
    "environment variable not UTF-8": (
        _text("tuya:\n  access_id: a\n  access_secret: ${S}\n  region: eu\n", {"S": b"\xff" * 32}),
        "tuya.access_secret",
        ("environment variable S is not UTF-8",),
    ),
    "secret not ASCII": (
        _text("tuya:\n  access_id: a\n  access_secret: " + "é" * 32 + "\n  region: eu\n"),
        "tuya.access_secret",
        ("ASCII",),
    ),
    "handler type is a function": (
        _plugin("def make(*a, **k):\n    open(MARKER, 'w').close()\n", "plugin:make"),
        "handlers[0].type",
        ("a function, not a handler class",),
    ),
    "handler type is another class": (
        _plugin("", "subprocess:Popen"),
        "handlers[0].type",
        ("class Popen, which is not a handler",),
    ),
    "handler type is no module path": (_plugin("", ":Popen"), "handlers[0].type", ("Class",)),
    "handler module fails to import": (
        _plugin("raise RuntimeError('broken plugin')\n", "plugin:Anything"),
        "handlers[0].type",
        ("cannot import plugin: RuntimeError: broken plugin",),
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_every_bad_file_exits_78_naming_the_key_without_a_traceback(
    tmp_path: Path, case: str
) -> None:
    write, key, words = BAD_FILES[case]
    env = write(tmp_path)
    started = time.monotonic()
    assert_refused(check_config(tmp_path / "config.yaml", env), key, *words)
    assert time.monotonic() - started < 30  # refused, not expanded or recursed into
    assert not (tmp_path / "called").exists()


def test_a_merge_chain_deeper_than_the_stack_is_a_config_error(tmp_path: Path) -> None:
    """PyYAML's constructor recurses along ``<<`` merges; on a shallow stack (here: a low
    recursion limit) that RecursionError must still become exit 78, not a traceback."""
    chain = "".join(
        f"&a{i} {{{f'<<: *a{i - 1}' if i else 'x: 1'}}}, " for i in range(400)
    )  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(HEAD + f"defs: [{chain}]\nz: {{<<: *a399}}\n")
    low_stack = "import runpy, sys; sys.setrecursionlimit(250); "
    low_stack += "runpy.run_module('tuya_events.cli.main', run_name='__main__')"
    result = subprocess.run(
        [sys.executable, "-c", low_stack, "check-config", "-c", config],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert_refused(result, "(top level)", "nested too deeply")


# -- a handler type that is not a handler class is never called --------------------------------

NOT_HANDLERS = """
from pathlib import Path

from tuya_events.handlers.base import BaseHandler, Handler


def touch(*args, **kwargs):
    Path(MARKER).write_text("called")


class Plain:
    def __init__(self, *args, **kwargs):
        touch()


class Callable:
    def __call__(self, *args, **kwargs):
        touch()


class LooksLikeOne:
    Options = None

    def __init__(self, *args, **kwargs):
        touch()

    async def start(self): ...

    def handle(self, event, delivery): ...

    async def stop(self): ...


instance = Callable()
Contract = BaseHandler
Protocol = Handler
"""

HANDLERS = """
from pydantic import BaseModel

from tuya_events.handlers.base import BaseHandler, Handler


class Options(BaseModel):
    channel: str


class Good(BaseHandler):
    Options = Options

    def __init__(self, name, options, context):
        super().__init__(name)
        self.channel = options.channel


class ByProtocol(Handler):
    timeout = None

    def __init__(self, name, options, context):
        self.name = name

    async def start(self): ...

    def handle(self, event, delivery): ...

    async def stop(self): ...
"""


def _plugin_module(tmp_path: Path, source: str) -> str:
    """A module in a tmp directory on sys.path, under a name no other test uses."""
    name = f"plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(source.replace("MARKER", repr(str(tmp_path / "called"))))
    return name


def _routes(handlers: list[dict[str, Any]]) -> list[Any]:
    tuya = {"access_id": "a", "access_secret": SECRET, "region": "eu"}
    settings = settings_from_mapping({"tuya": tuya, "handlers": handlers}, {})
    return routes_of(settings)


@pytest.mark.parametrize(
    "attribute", ["touch", "Plain", "Callable", "LooksLikeOne", "instance", "Contract", "Protocol"]
)
def test_a_type_naming_anything_but_a_handler_class_is_refused_before_it_is_called(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attribute: str
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    module = _plugin_module(tmp_path, NOT_HANDLERS)
    with pytest.raises(ConfigError) as caught:
        _routes([{"type": f"{module}:{attribute}", "channel": "x"}])
    assert list(dict(caught.value.problems)) == ["handlers[0].type"]
    assert "handler class" in caught.value.render() or "not a handler" in caught.value.render()
    assert not (tmp_path / "called").exists()


def test_handler_classes_by_module_path_and_the_built_in_names_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    module = _plugin_module(tmp_path, HANDLERS)
    routes = _routes(
        [
            {"type": f"{module}:Good", "name": "good", "channel": "c"},
            {"type": f"{module}:ByProtocol", "name": "protocol"},
            {"type": "log"},
        ]
    )
    assert [type(route.handler).__name__ for route in routes] == [
        "Good",
        "ByProtocol",
        "LogHandler",
    ]
    assert routes[0].handler.channel == "c"


def test_check_config_does_not_call_a_function_named_as_type(tmp_path: Path) -> None:
    write, key, words = BAD_FILES["handler type is a function"]
    write(tmp_path)
    assert_refused(check_config(tmp_path / "config.yaml"), key, *words)
    assert not (tmp_path / "called").exists()


# -- aliases: bounded, not refused --------------------------------------------------------------


def test_anchors_and_merges_for_shared_handler_options_keep_working(tmp_path: Path) -> None:
    """Bounding aliases (not refusing them) keeps this working: a merge may override keys."""
    config = tmp_path / "config.yaml"
    config.write_text(
        HEAD
        + "handlers:\n"
        + "  - &doors {type: log, name: a, level: warning, match: {product_key: pk_door}}\n"
        + "  - {<<: *doors, name: b}\n"
        + "  - <<: *doors\n    name: c\n    level: debug\n"
    )
    settings = load_settings(config, {})
    routes = routes_of(settings)
    assert [route.handler.name for route in routes] == ["a", "b", "c"]
    assert [h.options["level"] for h in settings.handlers] == ["warning", "warning", "debug"]
    assert all(h.match == {"product_key": "pk_door"} for h in settings.handlers)


@pytest.mark.parametrize(
    "bomb",
    [
        ALIAS_BOMB,
        # the same through mappings
        "a: &a {x: lol, y: lol, z: lol, w: lol}\n"
        + "".join(
            f"{n}: &{n} {{p: *{p}, q: *{p}, r: *{p}, s: *{p}, t: *{p}, u: *{p}}}\n"
            for p, n in zip("abcdefghij", "bcdefghijk", strict=True)
        ),
        # and through merge keys
        "a: &a {x: lol}\n"
        + "".join(
            f"{n}: &{n} [{', '.join([f'{{<<: *{p}}}'] * 8)}]\n"
            if p == "a"
            else f"{n}: &{n} [{', '.join([f'*{p}'] * 8)}]\n"
            for p, n in zip("abcdefghi", "bcdefghij", strict=True)
        ),
        # few values, long strings
        f"a: &a '{'x' * 200}'\n"
        + "".join(
            f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n"
            for p, n in zip("abcdef", "bcdefg", strict=True)
        ),
    ],
    ids=["lists", "mappings", "merges", "long strings"],
)
def test_alias_bombs_of_every_shape_are_refused_in_milliseconds(bomb: str) -> None:
    assert len(bomb) < 1000
    started = time.monotonic()
    with pytest.raises(ConfigError, match="alias bomb") as caught:
        parse_document(bomb)
    assert time.monotonic() - started < 1
    [(path, _)] = caught.value.problems
    assert path and path != "(top level)"


def test_environment_references_through_aliases_are_bounded_too() -> None:
    """Few values (under the alias bound), but each a 100 KB variable: 20 MB of strings."""
    text = HEAD + "a: &a [" + ", ".join(['"${BIG}"'] * 10) + "]\n"
    text += "b: [" + ", ".join(["*a"] * 20) + "]\n"
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(parse_document(text), {"BIG": "x" * 100_000})
    [path] = [
        p for p, problem in caught.value.problems if f"{MAX_INTERPOLATED >> 20} MiB" in problem
    ]
    assert path.startswith("b[")


# -- nesting: the bound, exactly ----------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 100_000])
def test_nesting_is_accepted_up_to_the_bound_and_refused_past_it(depth: int) -> None:
    text = "[" * depth + "]" * depth
    if depth <= MAX_DEPTH:
        tree = parse_document(text)
        for _ in range(depth - 1):
            [tree] = tree
        assert tree == []
    else:
        with pytest.raises(ConfigError, match=f"more than {MAX_DEPTH} levels"):
            parse_document(text)


# -- duplicate keys, anywhere: a property -------------------------------------------------------

KEYS = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("éß€中"))
SCALARS = st.one_of(st.integers(), st.booleans(), st.none(), TEXT)
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=4)
    ),
    max_leaves=20,
)


def _mapping_paths(node: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(node, dict):
        found = [path] if node else []
        for key, child in node.items():
            found += _mapping_paths(child, (*path, key))
        return found
    if isinstance(node, list):
        return [
            found for i, child in enumerate(node) for found in _mapping_paths(child, (*path, i))
        ]
    return []


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _json_with_duplicate(node: Any, target: tuple[str | int, ...], path: tuple = ()) -> str:
    """JSON (which is YAML) of ``node``, with the first key of the mapping at ``target`` twice."""
    if isinstance(node, dict):
        pairs = [
            f"{_json(k)}: {_json_with_duplicate(c, target, (*path, k))}" for k, c in node.items()
        ]
        if path == target:
            first = next(iter(node))
            pairs.append(f"{_json(first)}: 0")
        return "{" + ", ".join(pairs) + "}"
    if isinstance(node, list):
        items = [_json_with_duplicate(c, target, (*path, i)) for i, c in enumerate(node)]
        return "[" + ", ".join(items) + "]"
    return _json(node)


@settings(max_examples=150, deadline=None)
@given(tree=TREES.filter(lambda t: bool(_mapping_paths(t))), data=st.data())
def test_a_duplicate_key_anywhere_is_refused_naming_its_path(tree: Any, data: Any) -> None:
    target = data.draw(st.sampled_from(_mapping_paths(tree)))
    assert parse_document(_json(tree)) == tree  # without the duplicate: the same tree
    with pytest.raises(ConfigError) as caught:
        parse_document(_json_with_duplicate(tree, target))
    first = next(iter(_at(tree, target)))
    [(path, problem)] = caught.value.problems
    assert path == key_path((*target, first)) and "duplicate key" in problem


def _at(tree: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        tree = tree[part]
    return tree


@settings(max_examples=100, deadline=None)
@given(tree=TREES)
def test_the_strict_loader_reads_every_valid_document_as_pyyaml_does(tree: Any) -> None:
    for text in (yaml.safe_dump(tree), yaml.safe_dump(tree, default_flow_style=True)):
        assert parse_document(text) == yaml.safe_load(text)


def test_secret_files_keep_working_with_a_bom_and_a_newline() -> None:
    with tempfile.TemporaryDirectory() as directory:
        secret = Path(directory) / "secret"
        secret.write_bytes(b"\xef\xbb\xbf" + SECRET.encode() + b"\r\n")
        tree = {"tuya": {"access_id": "a", "access_secret_file": str(secret), "region": "eu"}}
        settings = settings_from_mapping(tree, {})
        assert settings.tuya.access_secret.get_secret_value() == SECRET
