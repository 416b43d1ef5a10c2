"""What the doctor found: one result per check, shown on a terminal or as JSON.

A result is passed, failed or skipped (always with why), and a failure carries the fix: the
lines a person follows to make it pass. Everything shown passes through the redactor first, so
a secret that slipped into a message (a URL's credentials echoed by a library) is masked in the
text and in the JSON alike.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tuya_events.observability.redact import REDACTOR


class Mark(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


# Fixed width, plain ASCII: readable in any terminal, a log file or a pasted issue.
_SIGNS = {Mark.PASSED: "[ ok ]", Mark.FAILED: "[FAIL]", Mark.SKIPPED: "[skip]"}


@dataclass(frozen=True)
class Result:
    """One check's outcome. ``check`` is a stable id (``openapi-keys``, ``handler:hook``) for
    scripts; ``facts`` are the numbers behind ``detail`` (counts, seconds), for ``--json``."""

    check: str
    title: str
    mark: Mark
    detail: str = ""
    fix: tuple[str, ...] = ()
    facts: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "title": self.title,
            "mark": self.mark.value,
            "detail": self.detail,
            "fix": list(self.fix),
            "facts": dict(self.facts),
        }


def passed(check: str, title: str, detail: str = "", **facts: Any) -> Result:
    return Result(check, title, Mark.PASSED, detail, (), facts)


def failed(check: str, title: str, detail: str, fix: Sequence[str], **facts: Any) -> Result:
    return Result(check, title, Mark.FAILED, detail, tuple(fix), facts)


def skipped(check: str, title: str, why: str, **facts: Any) -> Result:
    return Result(check, title, Mark.SKIPPED, why, (), facts)


@dataclass
class Report:
    """The results in the order the checks ran, and what the run cost (OpenAPI calls)."""

    source: str | None = None
    results: list[Result] = field(default_factory=list)
    openapi_calls: int = 0

    def add(self, result: Result) -> Result:
        self.results.append(result)
        return result

    def __iter__(self) -> Iterator[Result]:
        return iter(self.results)

    def get(self, check: str) -> Result | None:
        return next((result for result in self.results if result.check == check), None)

    @property
    def ok(self) -> bool:
        return not any(result.mark is Mark.FAILED for result in self.results)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        return {mark.value: sum(r.mark is mark for r in self.results) for mark in Mark}

    def as_dict(self) -> dict[str, Any]:
        return {
            "config": self.source,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "counts": self.counts(),
            "openapi_calls": self.openapi_calls,
            "checks": [result.as_dict() for result in self.results],
        }

    def to_json(self) -> str:
        return REDACTOR(json.dumps(self.as_dict(), ensure_ascii=False, indent=2)) + "\n"

    def to_text(self) -> str:
        lines = [f"tuya-events doctor{f': {self.source}' if self.source else ''}"]
        for result in self.results:
            head = f"{_SIGNS[result.mark]} {result.title}"
            lines.append(f"{head}: {result.detail}" if result.detail else head)
            lines += [f"         fix: {line}" for line in result.fix]
        counts = self.counts()
        summary = ", ".join(f"{counts[mark.value]} {mark.value}" for mark in Mark)
        verdict = "nothing failed" if self.ok else "something failed: see the fixes above"
        lines.append(f"{summary} ({self.openapi_calls} OpenAPI calls); {verdict}")
        return REDACTOR("\n".join(lines)) + "\n"


def format_duration(seconds: float) -> str:
    """``0.3 s``, ``42 s``, ``15 min 2 s``, ``3 h 5 min``, ``2 d 4 h``: what a person reads."""
    seconds = abs(seconds)
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    for unit, size, smaller, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "min", 60),
        ("min", 60, "s", 1),
    ):
        if whole >= size:
            big, rest = divmod(whole, size)
            part = rest // small_size
            return f"{big} {unit} {part} {smaller}" if part else f"{big} {unit}"
    return f"{whole} s"
