"""A throwaway PostgreSQL cluster: initdb into a temp directory, pg_ctl on a free loopback port.

The tests need a real server they can also stop and start again mid-stream (to prove the
PostgreSQL handler loses nothing), so they run their own cluster rather than rely on a system
service: its data, unix socket and log all live in one temp directory that is removed at the
end. PostgreSQL refuses to run as root, so when we are root the binaries run as an
unprivileged user (Debian's ``postgres``, else ``nobody``) that owns that directory.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

# Ports below the ephemeral range: still free when a test restarts the server.
from tests.support.ports import free_port

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
ENSURE_SCRIPT = "scripts/ensure-postgres.sh"

_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 30
_LOG_TAIL_LINES = 40

# Fast and still crash-safe for the tests' purpose: fsync=off and full_page_writes=off only
# matter if the *machine* crashes. synchronous_commit stays on (the default) on purpose: with
# fsync=off a commit is a write() into the kernel's cache, which is cheap, and it means a
# committed row survives even an immediate (crash) stop of the server, which the
# "nothing lost" tests rely on; synchronous_commit=off could lose the last commits then.
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "100",
    "log_connections": "off",
    "log_disconnections": "off",
}


class PostgresError(RuntimeError):
    """The throwaway cluster could not be set up, started or stopped (never a test skip)."""


@dataclass(frozen=True)
class PostgresBinaries:
    """Where the server binaries live, and their version (``pg_ctl --version``)."""

    bindir: Path
    version: str

    def path(self, name: str) -> str:
        """Absolute path of one binary of this installation."""
        return str(self.bindir / name)


def _has_server_binaries(directory: Path) -> bool:
    """All three are there (os.path.isfile: an unreadable PATH entry is just "no")."""
    return all(
        os.path.isfile(directory / name) and os.access(directory / name, os.X_OK)
        for name in SERVER_BINARIES
    )


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Sort key for /usr/lib/postgresql/<version>/bin: 16 > 15 > 9.6."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name)) or (0,)


def find_binaries() -> PostgresBinaries:
    """Find initdb, pg_ctl and postgres: PATH first, then Debian's highest versioned directory.

    Debian keeps them in /usr/lib/postgresql/<version>/bin, off PATH, so a fresh machine that
    has run scripts/ensure-postgres.sh only has them there. The directory is resolved through
    symlinks so that pg_ctl finds its sibling ``postgres`` of the same version.
    """
    candidates = [Path(p or ".") for p in os.environ.get("PATH", "").split(os.pathsep)]
    candidates += sorted(
        (Path(p) for p in glob.glob(DEBIAN_BIN_GLOB)), key=_version_key, reverse=True
    )
    for directory in candidates:
        if _has_server_binaries(directory):
            bindir = Path(os.path.realpath(directory / "pg_ctl")).parent
            if not _has_server_binaries(bindir):  # pg_ctl symlinked alone: keep the PATH dir
                bindir = directory
            version = _run([str(bindir / "pg_ctl"), "--version"]).stdout.strip()
            return PostgresBinaries(bindir=bindir, version=version)
    raise PostgresError(
        f"PostgreSQL server binaries ({', '.join(SERVER_BINARIES)}) not found on PATH nor in "
        f"{DEBIAN_BIN_GLOB}: run `bash {ENSURE_SCRIPT}` (done by `make test`)"
    )


def _run(
    args: Sequence[str],
    *,
    user: pwd.struct_passwd | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL binary, as ``user`` when given; raise with its output when it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    if user is not None:
        env.update(HOME=str(cwd or "/"), USER=user.pw_name, LOGNAME=user.pw_name)
    try:
        return subprocess.run(
            list(args),
            cwd=cwd,
            env=env,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        raise PostgresError(
            f"{' '.join(args)} failed with exit code {exc.returncode}:\n{exc.stdout}{exc.stderr}"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise PostgresError(f"{' '.join(args)} timed out after {timeout}s") from exc


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The user to run the server as: None (ourselves) unless we are root.

    Debian's package creates ``postgres``; without it ``nobody`` does, and only when neither
    exists is a ``postgres`` system user created.
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    _run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"])
    return pwd.getpwnam("postgres")


def _reachable_base_dir(user: pwd.struct_passwd | None) -> str:
    """The temp base directory, unless ``user`` could not traverse it (then /tmp)."""
    base = tempfile.gettempdir()
    if user is None:
        return base
    path = Path(base).resolve()
    for part in (path, *path.parents):
        if not part.stat().st_mode & 0o001:  # others may not search it: the user is "other"
            return "/tmp"
    return base


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie counts as dead (PID 1 here may not reap them)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _run_coroutine(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to completion in its own thread and loop, so callers may be sync or async."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()


class PostgresCluster:
    """One throwaway cluster: trust auth, superuser ``user``, a database ``database``.

    ``start()`` initdb's on first use and picks a free port once; ``stop()`` and ``start()``
    again reuse that port and data, so DSNs stay valid across a restart. ``close()`` (also run
    at interpreter exit) stops the server by its pid and removes the whole directory.
    """

    def __init__(
        self,
        *,
        user: str = "tuya",
        database: str = "tuya_test",
        settings: Mapping[str, str] | None = None,
        binaries: PostgresBinaries | None = None,
    ) -> None:
        self.user = user
        self.database = database
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.binaries = binaries or find_binaries()
        self._os_user = _unprivileged_user()
        self.base_dir = Path(
            tempfile.mkdtemp(prefix="tuya-pg-", dir=_reachable_base_dir(self._os_user))
        )
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.log_file = self.base_dir / "server.log"
        self.port: int | None = None
        self.pid: int | None = None
        self._initialised = False
        self._closed = False
        atexit.register(self.close)
        if self._os_user is not None:
            os.chown(self.base_dir, self._os_user.pw_uid, self._os_user.pw_gid)

    # -- addresses ---------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def dsn(self) -> str:
        """postgresql://user@127.0.0.1:port/database, the cluster's default database."""
        return self.dsn_for(self.database)

    def dsn_for(self, database: str) -> str:
        """The DSN of another database on this cluster (see ``create_database``)."""
        if self.port is None:
            raise PostgresError("the cluster has never been started: it has no port yet")
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.pid is not None and _pid_alive(self.pid)

    def start(self) -> None:
        """Start the server (initdb first, once); a no-op when it already runs.

        The first start picks a free port and retries with another one if it was taken in
        between; later starts reuse it, because clients already hold the DSN.
        """
        if self._closed:
            raise PostgresError("the cluster was closed")
        if self.running:
            return
        if not self._initialised:
            self._initdb()
        if self.port is not None:
            self._start_on(self.port)
            return
        for attempt in range(5):
            port = free_port()
            try:
                self._start_on(port)
            except PostgresError:
                if attempt == 4 or "could not bind" not in self.log_tail():
                    raise
                continue
            self.port = port
            self._create_default_database()
            return

    def stop(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data and port for a later ``start()``.

        ``mode`` is pg_ctl's: "fast" (disconnect clients, clean shutdown) or "immediate" (a
        crash: the next start recovers from the WAL).
        """
        if not self.running:
            self.pid = None
            return
        self._pg_ctl("stop", "-m", mode, "-t", str(_STOP_TIMEOUT_S))
        self._wait_gone(self.pid)
        self.pid = None

    def restart(self, mode: str = "fast") -> None:
        """``stop(mode)`` then ``start()``: same port, same data."""
        self.stop(mode)
        self.start()

    def close(self) -> None:
        """Stop the server by its pid (whatever state pg_ctl is in) and remove the directory."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        pid = self.pid or self._pid_from_file()
        if pid is not None and _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown: postmaster ends its children
            try:
                self._wait_gone(pid, timeout=10)
            except PostgresError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_gone(pid, timeout=10)
        self.pid = None
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- databases ---------------------------------------------------------------------------

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run one SQL statement as the superuser (through asyncpg, in a thread of its own)."""

        async def run() -> None:
            conn = await asyncpg.connect(self.dsn_for(database), timeout=30)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        _run_coroutine(run())

    def create_database(self, name: str) -> str:
        """Create an empty database (tests' isolation) and return its DSN."""
        self.execute(f"CREATE DATABASE {_quote_ident(name)}")
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        self.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    # -- diagnostics -------------------------------------------------------------------------

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The end of the server log, for error messages."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ---------------------------------------------------------------------------

    def _initdb(self) -> None:
        self.data_dir.mkdir(mode=0o700)
        self.socket_dir.mkdir(mode=0o755)
        if self._os_user is not None:
            for path in (self.data_dir, self.socket_dir):
                os.chown(path, self._os_user.pw_uid, self._os_user.pw_gid)
        _run(
            [
                self.binaries.path("initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                self.user,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",  # the data is thrown away: don't wait for the disk
            ],
            user=self._os_user,
            cwd=self.base_dir,
        )
        self._initialised = True

    def _write_settings(self, port: int) -> None:
        """(Re)write the settings included by postgresql.conf: the port is only known now."""
        settings = {
            **self.settings,
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self.socket_dir}'",
        }
        conf = self.data_dir / "postgresql.conf"
        auto = self.data_dir / "tests.conf"
        auto.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        if self._os_user is not None:
            os.chown(auto, self._os_user.pw_uid, self._os_user.pw_gid)
        include = "include 'tests.conf'\n"
        if include not in conf.read_text():
            with conf.open("a") as fh:
                fh.write(include)

    def _start_on(self, port: int) -> None:
        self._write_settings(port)
        try:
            self._pg_ctl("start", "-w", "-t", str(_START_TIMEOUT_S), "-l", str(self.log_file))
        except PostgresError as exc:
            self._kill_leftover()
            raise PostgresError(
                f"PostgreSQL did not start on 127.0.0.1:{port}: {exc}\n"
                f"--- server log ({self.log_file}) ---\n{self.log_tail()}"
            ) from exc
        self.pid = self._pid_from_file()
        if self.pid is None or not _pid_alive(self.pid):
            raise PostgresError(
                f"pg_ctl reported a start but the server is not running\n{self.log_tail()}"
            )

    def _pg_ctl(self, *args: str) -> None:
        _run(
            [self.binaries.path("pg_ctl"), "--pgdata", str(self.data_dir), *args],
            user=self._os_user,
            cwd=self.base_dir,
            timeout=_START_TIMEOUT_S + 30,
        )

    def _pid_from_file(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def _kill_leftover(self) -> None:
        """After a failed start: make sure no half-started postmaster stays behind."""
        pid = self._pid_from_file()
        if pid is not None and _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_gone(pid, timeout=10)

    @staticmethod
    def _wait_gone(pid: int, timeout: float = _STOP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                raise PostgresError(f"PostgreSQL (pid {pid}) still runs after {timeout}s")
            time.sleep(0.02)

    def _create_default_database(self) -> None:
        self.create_database(self.database)
