"""Resolve the broker's classpath with Maven and compile the Tuya auth provider, cached.

`make test` runs this on every call, so a warm run must cost well under a second: each step is
skipped while the hash of its inputs matches the one stored beside its output (and every jar of
the cached classpath is still in ~/.m2).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
POM = HERE / "pom.xml"
MAVEN_SETTINGS = HERE / "maven-settings.xml"
JAVA_SOURCES = HERE / "java"
CLASSPATH_FILE = CACHE / "classpath.txt"
CLASSES_DIR = CACHE / "classes"
MAVEN_LOG = CACHE / "mvn.log"

Log = Callable[[str], None]

# Reported at most this often while Maven downloads (the first run fetches a few hundred MB).
PROGRESS_EVERY_S = 5.0


class PrepareError(RuntimeError):
    """Maven or javac failed; the message carries the tail of their output."""


@dataclass(frozen=True)
class BrokerClasspath:
    """What `java` needs to run the standalone broker with the Tuya auth provider."""

    jars: tuple[str, ...]
    classes_dir: Path

    def as_arg(self) -> str:
        return os.pathsep.join((str(self.classes_dir), *self.jars))


def prepare(log: Log = print) -> BrokerClasspath:
    """Resolve (Maven) and compile (javac) what changed since the last call."""
    started = time.monotonic()
    CACHE.mkdir(exist_ok=True)
    # Two test runs preparing at once (a developer's and CI's) take turns.
    with (CACHE / "prepare.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        jars = _resolve_classpath(log)
        _compile_provider(jars, log)
    log(f"pulsar test broker: classpath ready ({len(jars)} jars) in {_since(started)}")
    return BrokerClasspath(jars=jars, classes_dir=CLASSES_DIR)


def _resolve_classpath(log: Log) -> tuple[str, ...]:
    fingerprint = _digest([POM, MAVEN_SETTINGS])
    stamp = CACHE / "classpath.sha256"
    if _stamp_matches(stamp, fingerprint) and CLASSPATH_FILE.exists():
        jars = _read_classpath()
        if all(Path(jar).is_file() for jar in jars):
            return jars
        log("pulsar test broker: jars missing from ~/.m2, resolving again")
    log("pulsar test broker: resolving pulsar-broker with Maven (the first run downloads ~260 MB)")
    _run_maven(log)
    stamp.write_text(fingerprint)
    return _read_classpath()


def _run_maven(log: Log) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PrepareError("`mvn` is not on PATH: install Maven (Debian package `maven`)")
    command = [
        mvn,
        "-B",
        "-s",
        str(MAVEN_SETTINGS),
        "-f",
        str(POM),
        "dependency:build-classpath",
        f"-Dmdep.outputFile={CLASSPATH_FILE}",
        "-Dmdep.includeScope=runtime",
    ]
    started = time.monotonic()
    downloads = 0
    last_report = started
    with MAVEN_LOG.open("w") as transcript:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=HERE
        )
        assert process.stdout is not None
        for line in process.stdout:
            transcript.write(line)
            if "Downloaded from" in line:
                downloads += 1
            now = time.monotonic()
            if now - last_report >= PROGRESS_EVERY_S:
                log(f"  ... {downloads} files downloaded, {_since(started)}")
                last_report = now
        code = process.wait()
    if code != 0:
        raise PrepareError(f"Maven failed (exit {code}); see {MAVEN_LOG}:\n{_tail(MAVEN_LOG)}")
    log(f"  resolved in {_since(started)} ({downloads} files downloaded)")


def _compile_provider(jars: tuple[str, ...], log: Log) -> None:
    sources = sorted(JAVA_SOURCES.rglob("*.java"))
    fingerprint = _digest([*sources, CLASSPATH_FILE])
    stamp = CACHE / "classes.sha256"
    if _stamp_matches(stamp, fingerprint) and CLASSES_DIR.is_dir():
        return
    javac = shutil.which("javac")
    if javac is None:
        raise PrepareError("`javac` is not on PATH: install JDK 17 (`openjdk-17-jdk-headless`)")
    log(f"pulsar test broker: compiling {len(sources)} Java sources")
    shutil.rmtree(CLASSES_DIR, ignore_errors=True)
    command = [
        javac,
        "--release",
        "17",
        "-proc:none",
        "-Xlint:all,-processing,-classfile",
        "-Werror",
        "-cp",
        os.pathsep.join(jars),
        "-d",
        str(CLASSES_DIR),
        *map(str, sources),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PrepareError(f"javac failed:\n{result.stdout}{result.stderr}")
    stamp.write_text(fingerprint)


def _read_classpath() -> tuple[str, ...]:
    return tuple(p for p in CLASSPATH_FILE.read_text().strip().split(os.pathsep) if p)


def _digest(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(HERE)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _stamp_matches(stamp: Path, fingerprint: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == fingerprint


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _since(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"
