"""Configuration errors: every problem at once, each with its key path, never a secret's value."""

from __future__ import annotations

from pydantic import ValidationError

EX_CONFIG = 78  # sysexits.h: configuration error

Problems = list[tuple[str, str]]


def key_path(parts: tuple[str | int, ...]) -> str:
    """``("handlers", 0, "url")`` -> ``handlers[0].url``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def validation_problems(error: ValidationError, where: tuple[str | int, ...] = ()) -> Problems:
    """A pydantic error as problems, each at its key path below ``where``; input values (which
    may be secrets) are never included."""
    return [
        (key_path((*where, *item["loc"])), item["msg"].removeprefix("Value error, "))
        for item in error.errors(include_input=False, include_url=False)
    ]


class ConfigError(Exception):
    """Raised with all the problems found; the CLI prints them and exits with :data:`EX_CONFIG`."""

    def __init__(self, problems: Problems, source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        where = f" in {self.source}" if self.source else ""
        count = len(self.problems)
        lines = [f"configuration error{'s' if count != 1 else ''}{where}:"]
        lines += [f"  {path or '(top level)'}: {problem}" for path, problem in self.problems]
        return "\n".join(lines)
