"""``${VAR}`` / ``${VAR:-default}`` in YAML string values, and ``*_file`` secret indirection.

Both run on the raw YAML tree before validation, so every problem is reported with its key path.
``$${`` is a literal ``${``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuya_events.config.errors import key_path

_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# Characters that ``${VAR}`` references may add to the whole file: a value referenced through
# thousands of aliases or references must not build gigabytes of strings.
MAX_INTERPOLATED = 16 << 20
MAX_SECRET_FILE_BYTES = 64 << 10


@dataclass
class _Budget:
    """What ``${VAR}`` references may still add, shared across the whole tree."""

    remaining: int = MAX_INTERPOLATED
    exhausted: bool = False

    def spend(self, size: int) -> bool:
        self.remaining -= size
        return self.remaining >= 0


class SecretFileError(ValueError):
    """A secret file that cannot be used; the message never holds any of its content."""


def interpolate(
    node: Any,
    environ: Mapping[str, str],
    problems: list[tuple[str, str]],
    path: tuple[str | int, ...] = (),
    budget: _Budget | None = None,
) -> Any:
    """Replace environment references throughout the tree; unknown variables become problems."""
    if budget is None:
        budget = _Budget()
    if isinstance(node, dict):
        return {
            key: interpolate(value, environ, problems, (*path, key), budget)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [
            interpolate(value, environ, problems, (*path, i), budget)
            for i, value in enumerate(node)
        ]
    if not isinstance(node, str) or "$" not in node:
        return node
    return _VARIABLE.sub(lambda match: _replace(match, environ, problems, path, budget), node)


def _replace(
    match: re.Match[str],
    environ: Mapping[str, str],
    problems: list[tuple[str, str]],
    path: tuple[str | int, ...],
    budget: _Budget,
) -> str:
    if match.group(0) == "$${":
        return "${"
    name, default = match.group(1), match.group(2)
    if name in environ:
        value = environ[name]
        if not is_utf8(value):
            problems.append((key_path(path), f"environment variable {name} is not UTF-8 text"))
            return ""
    elif default is not None:
        value = default
    else:
        problems.append((key_path(path), f"environment variable {name} is not set"))
        return ""
    if budget.spend(len(value)):
        return value
    if not budget.exhausted:  # reported once, where it ran out
        budget.exhausted = True
        limit = MAX_INTERPOLATED >> 20
        problems.append(
            (key_path(path), f"environment references add more than {limit} MiB in all")
        )
    return ""


def is_utf8(value: str) -> bool:
    """False for the surrogate escapes Python uses for an environment's undecodable bytes."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_secret_file(path: str) -> str:
    """A secret file's content without the trailing newline that editors and ``echo`` add
    (nor a byte-order mark, which some editors write and is never part of a secret)."""
    with open(path, "rb") as stream:
        raw = stream.read(MAX_SECRET_FILE_BYTES + 1)
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise SecretFileError(
            f"{path} is larger than {MAX_SECRET_FILE_BYTES >> 10} KiB: not a secret file"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SecretFileError(f"{path} is not UTF-8 text") from None
    return text.rstrip("\r\n")


def resolve_secret_files(
    section: Any,
    secret_keys: tuple[str, ...],
    problems: list[tuple[str, str]],
    path: tuple[str | int, ...],
) -> None:
    """For each secret key ``k``, ``k_file: PATH`` reads the value from PATH (in place)."""
    if not isinstance(section, dict):
        return
    for key in secret_keys:
        file_key = f"{key}_file"
        if file_key not in section:
            continue
        where = key_path((*path, file_key))
        if section.get(key) not in (None, ""):
            problems.append((where, f"give either {key} or {file_key}, not both"))
            continue
        file_path = section.pop(file_key)
        if not isinstance(file_path, str) or not file_path:
            problems.append((where, "must be a file path"))
            continue
        try:
            section[key] = read_secret_file(file_path)
        except OSError as exc:
            problems.append((where, f"cannot read {file_path}: {exc.strerror or exc}"))
            continue
        except SecretFileError as exc:
            problems.append((where, str(exc)))
            continue
        if not section[key]:
            problems.append((where, f"{file_path} is empty"))
