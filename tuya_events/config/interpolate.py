"""``${VAR}`` / ``${VAR:-default}`` in YAML string values, and ``*_file`` secret indirection.

Both run on the raw YAML tree before validation, so every problem is reported with its key path.
``$${`` is a literal ``${``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def key_path(parts: tuple[str | int, ...]) -> str:
    """``("handlers", 0, "url")`` -> ``handlers[0].url``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def interpolate(
    node: Any,
    environ: Mapping[str, str],
    problems: list[tuple[str, str]],
    path: tuple[str | int, ...] = (),
) -> Any:
    """Replace environment references throughout the tree; unknown variables become problems."""
    if isinstance(node, dict):
        return {
            key: interpolate(value, environ, problems, (*path, key)) for key, value in node.items()
        }
    if isinstance(node, list):
        return [interpolate(value, environ, problems, (*path, i)) for i, value in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        problems.append((key_path(path), f"environment variable {name} is not set"))
        return ""

    return _VARIABLE.sub(replace, node)


def read_secret_file(path: str) -> str:
    """A secret file's content without the trailing newline that editors and ``echo`` add."""
    return Path(path).read_text(encoding="utf-8").rstrip("\r\n")


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
        if not section[key]:
            problems.append((where, f"{file_path} is empty"))
