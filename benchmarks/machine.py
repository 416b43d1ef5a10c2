"""What a benchmark's figures depend on: the CPU, the load average and the library versions.

Printed at the top of every benchmark; the load average tells whether other work competed.
"""

from __future__ import annotations

import os
import platform
from importlib.metadata import version


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine(*packages: str, note: str = "") -> str:
    """``2 CPUs (model), Python 3.11.7, aiohttp 3.x, load average 0.31`` plus ``note``."""
    versions = "".join(f", {package} {version(package)}" for package in packages)
    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}{versions}, "
        f"load average {os.getloadavg()[0]:.2f}{note}"
    )
