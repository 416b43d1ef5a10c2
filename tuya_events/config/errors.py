"""Configuration errors: every problem at once, each with its key path, never a secret's value."""

from __future__ import annotations

EX_CONFIG = 78  # sysexits.h: configuration error


class ConfigError(Exception):
    """Raised with all the problems found; the CLI prints them and exits with :data:`EX_CONFIG`."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        where = f" in {self.source}" if self.source else ""
        count = len(self.problems)
        lines = [f"configuration error{'s' if count != 1 else ''}{where}:"]
        lines += [f"  {path or '(top level)'}: {problem}" for path, problem in self.problems]
        return "\n".join(lines)
