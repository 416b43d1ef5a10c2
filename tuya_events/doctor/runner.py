"""The checks in the order a person would look, each group skipped (with why) when asked to or
when what it needs failed before.

1. the configuration (as ``check-config``), 2-4. the OpenAPI (clock, key pair, project),
5-6. the message service (login, standby subscription, one message), 7. the handlers' targets,
8. the local state. Nothing is acknowledged, sent to a handler or written, except a test file
in each directory that must be writable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tuya_events.config import ConfigError, Settings, load_settings
from tuya_events.config.loader import find_config_file
from tuya_events.config.transport_security import insecure_transports
from tuya_events.doctor import (
    GROUPS,
    HANDLERS,
    LOCAL,
    MESSAGES,
    OPENAPI,
    local_checks,
    message_checks,
    openapi_checks,
)
from tuya_events.doctor.message_checks import MessageChecks
from tuya_events.doctor.openapi_checks import OpenApiChecks
from tuya_events.doctor.report import Report, failed, passed, skipped
from tuya_events.doctor.target_checks import TargetChecks
from tuya_events.handlers import HandlerContext
from tuya_events.observability.metrics import Metrics
from tuya_events.pipeline.routes import build_routes

CONFIG = "config"


@dataclass(frozen=True)
class DoctorOptions:
    config: str | None = None
    wait: float = 60.0
    skip: frozenset[str] = frozenset()
    websocket_url: str | None = None
    # Region -> OpenAPI URL, replacing Tuya's table (tests point the data centers at fakes).
    openapi_urls: Mapping[str, str] | None = field(default=None)


def _group_checks(settings: Settings | None) -> dict[str, tuple[tuple[str, str], ...]]:
    """Every check id and title of each group, for the skipped lines."""
    handlers: tuple[tuple[str, str], ...] = ()
    if settings is not None:
        handlers = tuple(
            (f"handler:{name}", f"handler {name} ({entry.type})")
            for name, entry in zip(settings.handler_names(), settings.handlers, strict=True)
        )
    return {
        OPENAPI: tuple(openapi_checks.TITLES.items()),
        MESSAGES: tuple(message_checks.TITLES.items()),
        HANDLERS: handlers or (("handlers", "handlers' targets"),),
        LOCAL: tuple(local_checks.TITLES.items()),
    }


def check_configuration(config: str | None, report: Report) -> Settings | None:
    title = "configuration is valid (as check-config)"
    try:
        report.source = str(find_config_file(config))
        settings = load_settings(config)
        build_routes(settings, HandlerContext(settings, Metrics()))
    except ConfigError as error:
        problems = [f"{path or '(top level)'}: {problem}" for path, problem in error.problems]
        report.add(
            failed(
                CONFIG,
                title,
                f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
                + (f" in {error.source}" if error.source else ""),
                problems,
            )
        )
        return None
    warnings = [str(finding) for finding in insecure_transports(settings)]
    pairs = zip(settings.handler_names(), settings.handlers, strict=True)
    names = ", ".join(f"{name} ({entry.type})" for name, entry in pairs)
    detail = f"handlers: {names}"
    if warnings:
        detail += "; warnings: " + "; ".join(warnings)
    report.add(passed(CONFIG, title, detail, warnings=warnings))
    return settings


async def diagnose(options: DoctorOptions) -> Report:
    report = Report()
    settings = check_configuration(options.config, report)
    groups = _group_checks(settings)
    for group in GROUPS:
        if settings is None:
            why = "the configuration is not valid"
        elif group in options.skip:
            why = f"--skip {group}"
        else:
            try:
                await _run_group(group, settings, options, report)
            except Exception as error:  # a bug of ours: say so, and go on with the next group
                report.add(
                    failed(
                        f"{group}-internal-error",
                        f"the {group} checks",
                        f"stopped by an internal error: {type(error).__name__}: {error}",
                        ("this is a bug in tuya-events doctor: please report it with this line",),
                    )
                )
            continue
        for check, title in groups[group]:
            report.add(skipped(check, title, why))
    return report


async def _run_group(
    group: str, settings: Settings, options: DoctorOptions, report: Report
) -> None:
    if group == OPENAPI:
        await OpenApiChecks(settings, report, options.openapi_urls).run()
    elif group == MESSAGES:
        await MessageChecks(settings, report, options.wait, options.websocket_url).run()
    elif group == HANDLERS:
        await TargetChecks(settings, report).run()
    else:
        local_checks.run(settings, report, report.source)
