"""One genuine Apache Pulsar standalone broker (with its bookie) in a JVM of its own.

The broker lives in a fresh temporary directory on free loopback ports. It can be stopped and
started again on the same ports and data, which is how the daemon's tests prove that a broker
restart mid-stream loses nothing; `close()` stops it and deletes the directory.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import IO

from tests.support.ports import LOOPBACK, free_ports, is_free

from .admin import PulsarAdmin
from .build import HERE, BrokerClasspath, Log
from .credentials import CredentialsFile, TuyaCredentials
from .tenant import TuyaTenant
from .tls import hs256_token, make_tls_files

CONFIG_TEMPLATE = HERE / "standalone.conf"
LOG4J_CONFIG = HERE / "log4j2.xml"
START_TIMEOUT_S = 180.0  # a cold JVM on a busy 2-core machine; warm starts take ~15 s
STOP_TIMEOUT_S = 60.0
WORKDIR_PREFIX = "tuya-pulsar-"
OWNER_FILE = "owner.pid"

JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:MaxDirectMemorySize=512m",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.net.preferIPv4Stack=true",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dlog4j.shutdownHookEnabled=false",
    # What Pulsar's own launch script opens for Netty, BookKeeper and the JVM metrics.
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.util.zip=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-opens=java.base/sun.net=ALL-UNNAMED",
    "--add-opens=java.management/sun.management=ALL-UNNAMED",
)


class BrokerStartError(RuntimeError):
    """The broker did not become ready; the message ends with the tail of its log."""


@dataclass(frozen=True)
class BrokerPorts:
    """Every port the JVM listens on (checked with `ss -ltnp`: there are no others)."""

    broker: int  # binary protocol
    web: int  # admin REST API and WebSocket API
    bookie: int  # the in-process BookKeeper bookie
    broker_tls: int  # binary protocol over TLS (a certificate of the test CA)

    @classmethod
    def free(cls) -> BrokerPorts:
        return cls(*free_ports(4))


class PulsarBroker:
    """A standalone broker with Tuya's ``auth1`` authentication; see the module docstring."""

    def __init__(
        self,
        classpath: BrokerClasspath,
        ports: BrokerPorts | None = None,
        workdir: Path | None = None,
        log: Log = print,
    ) -> None:
        self.classpath = classpath
        self.ports = ports or BrokerPorts.free()
        if workdir is None:
            sweep_stale_workdirs()
            workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / OWNER_FILE).write_text(str(os.getpid()))
        self.log_path = self.workdir / "broker.log"
        self._log = log
        self.credentials = CredentialsFile(self.workdir / "credentials.properties")
        self.tls = make_tls_files(self.workdir)
        self.token_secret_key = self.workdir / "token-secret.key"
        self.token_secret_key.write_bytes(secrets.token_bytes(32))
        # The broker's own clients and these helpers' admin calls log in with this pair.
        self.service_credentials = TuyaCredentials.generate()
        self.credentials.register(self.service_credentials)
        self.config_path = self.workdir / "standalone.conf"
        self.config_path.write_text(self._render_config())
        self.admin = PulsarAdmin(self.admin_url, self.service_credentials)
        self.start_durations: list[float] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False

    # -- addresses -------------------------------------------------------------------------
    @property
    def broker_url(self) -> str:
        return f"pulsar://{LOOPBACK}:{self.ports.broker}"

    @property
    def broker_tls_url(self) -> str:
        """``pulsar+ssl://``, served with a certificate that only ``tls.ca_cert`` vouches for."""
        return f"pulsar+ssl://{LOOPBACK}:{self.ports.broker_tls}"

    def make_token(self, subject: str) -> str:
        """A JWT (HS256) the broker's token provider accepts: a client of "your own cluster"."""
        return hs256_token(self.token_secret_key.read_bytes(), subject)

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.web}"

    @property
    def websocket_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.ports.web}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.is_running() else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- life cycle ------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT_S) -> float:
        """Start the JVM and wait until it serves; returns the seconds it took."""
        if self.is_running():
            raise RuntimeError(f"broker already running (pid {self.pid})")
        taken = [port for port in astuple(self.ports) if not is_free(port)]
        if taken:
            raise BrokerStartError(f"ports {taken} are taken by another process")
        started = time.monotonic()
        with self.log_path.open("ab") as log_file:
            log_file.write(f"==== starting broker at {time.ctime()} ====\n".encode())
            log_file.flush()
            self._process = self._spawn(log_file)
        if not self._atexit_registered:
            atexit.register(self._kill_if_running)
            self._atexit_registered = True
        self._wait_until_ready(started, timeout)
        elapsed = time.monotonic() - started
        self.start_durations.append(elapsed)
        self._log(
            f"pulsar test broker ready in {elapsed:.1f} s (pid {self.pid}): {self.broker_url} "
            f"{self.admin_url} {self.websocket_url}"
        )
        return elapsed

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM and wait (the broker closes its ledgers cleanly); SIGKILL if it hangs."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._log(f"pulsar test broker ignored SIGTERM for {timeout:.0f} s: SIGKILL")
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, for tests that want one. start() recovers from the same data."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> float:
        """stop() then start() on the same ports and data; returns the start-up seconds."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the broker and delete its directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PulsarBroker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- Tuya tenants ----------------------------------------------------------------------
    def register(self, credentials: TuyaCredentials) -> None:
        """Make the broker accept ``credentials`` (effective at once, no restart)."""
        self.credentials.register(credentials)

    def create_tenant(
        self, credentials: TuyaCredentials | None = None, notice_topic: bool = True
    ) -> TuyaTenant:
        """Register a key pair (fresh unless given) and create its Tuya-shaped tenant and topics
        (without the notice topic, and creating none on demand, when ``notice_topic`` is off)."""
        credentials = credentials or TuyaCredentials.generate()
        self.register(credentials)
        self.admin.create_tuya_tenant(credentials.access_id, notice_topic)
        return TuyaTenant(credentials, self.broker_url, self.websocket_url)

    def settled_backlog(self, tenant: TuyaTenant, expected: int, timeout: float = 15.0) -> int:
        """The tenant subscription's backlog once it equals ``expected``, or when ``timeout``
        runs out. Acknowledgements are sent in groups, so they need a moment to arrive."""
        deadline = time.monotonic() + timeout
        backlog = self.admin.backlog(tenant.topic(), tenant.subscription)
        while backlog != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            backlog = self.admin.backlog(tenant.topic(), tenant.subscription)
        return backlog

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no broker log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- internals -------------------------------------------------------------------------
    def _render_config(self) -> str:
        values = {
            "broker_port": str(self.ports.broker),
            "web_port": str(self.ports.web),
            "broker_tls_port": str(self.ports.broker_tls),
            "tls_cert": str(self.tls.server_cert),
            "tls_key": str(self.tls.server_key),
            "tls_ca": str(self.tls.ca_cert),
            "token_secret_key": str(self.token_secret_key),
            "credentials_file": str(self.credentials.path),
            "internal_id": self.service_credentials.access_id,
            "internal_secret": self.service_credentials.access_secret,
        }
        text = CONFIG_TEMPLATE.read_text()
        for name, value in values.items():
            text = text.replace("{{" + name + "}}", value)
        if "{{" in text:
            raise ValueError(f"unfilled field left in {CONFIG_TEMPLATE}")
        return text

    def _command(self) -> list[str]:
        java = _java()
        data = self.workdir / "data"
        return [
            java,
            *JVM_OPTIONS,
            f"-Dlog4j.configurationFile={LOG4J_CONFIG}",
            "-cp",
            self.classpath.as_arg(),
            "org.apache.pulsar.PulsarStandaloneStarter",
            "--config",
            str(self.config_path),
            "--no-functions-worker",
            "--no-stream-storage",
            # No --wipe-data, ever: it empties the metadata and bookie directories at start, which
            # would lose every message across a restart. The directory is fresh the first time.
            "--metadata-dir",
            str(data / "metadata"),
            "--bookkeeper-dir",
            str(data / "bookkeeper"),
            "--bookkeeper-port",
            str(self.ports.bookie),
            "--advertised-address",
            LOOPBACK,
        ]

    def _spawn(self, log_file: IO[bytes]) -> subprocess.Popen[bytes]:
        command = self._command()
        # If this Python process dies without closing us, the JVM follows (Linux). Only from
        # the main thread: the kernel ties the signal to the thread that forked.
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        return subprocess.Popen(
            command,
            cwd=self.workdir,  # a stray relative path lands in the temp dir, not the repo
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C on `python -m tests.pulsar start` is ours to handle
        )

    def _wait_until_ready(self, started: float, timeout: float) -> None:
        assert self._process is not None
        while True:
            code = self._process.poll()
            if code is not None:
                raise BrokerStartError(
                    f"the Pulsar broker exited with code {code} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self.admin.is_ready() and _accepts_connections(self.ports.broker):
                return
            if time.monotonic() - started > timeout:
                self.kill()
                raise BrokerStartError(
                    f"the Pulsar broker was not ready after {timeout:.0f} s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def _kill_if_running(self) -> None:
        if self.is_running():
            self.kill()


def sweep_stale_workdirs() -> None:
    """Delete the directories of brokers whose Python owner died without closing them."""
    for workdir in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        try:
            owner = int((workdir / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if not _alive(owner):
            shutil.rmtree(workdir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").is_file():
        return str(Path(home, "bin", "java"))
    java = shutil.which("java")
    if java is None:
        raise BrokerStartError("`java` is not on PATH: the test broker needs a JDK 17")
    return java


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0):
            return True
    except OSError:
        return False


def log_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
