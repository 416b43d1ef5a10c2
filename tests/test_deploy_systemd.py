"""deploy/systemd: the unit passes systemd's own checks, says what the daemon relies on, and its
sample configuration and hardening work with the real daemon.

``systemd-analyze`` comes from Debian's systemd package (``scripts/ensure-deploy-tools.sh``, run
by ``make test-deps``, installs it when missing). No systemd manager runs here, so the unit is not
started; what can be run is: ``check-config`` as ``ExecStartPre=`` runs it (credentials and
state directory in the environment), and the daemon under the same seccomp rule that
``MemoryDenyWriteExecute=yes`` installs.
"""

from __future__ import annotations

import configparser
import ctypes
import json
import mmap
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.cli import start_demo
from tests.support.paths import ROOT, TUYA_EVENTS
from tuya_events.catalogue.store import CatalogueStore
from tuya_events.cli.main import build_parser
from tuya_events.config import ConfigError
from tuya_events.config.loader import settings_from_mapping
from tuya_events.config.settings import catalogue_path, state_directory
from tuya_events.config.types import parse_duration

SYSTEMD = ROOT / "deploy" / "systemd"
UNIT = SYSTEMD / "tuya-events.service"
SAMPLE_CONFIG = SYSTEMD / "config.yaml"
INSTALLED = "/opt/tuya-events/bin/tuya-events"
SECRET = "s" * 32


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, (
        "systemd-analyze is missing: run `make test-deps` (scripts/ensure-deploy-tools.sh)"
    )
    return found


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value in order (systemd keys may repeat)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


UNIT_SETTINGS = parse_unit(UNIT.read_text())
SERVICE = UNIT_SETTINGS["Service"]


def one(key: str) -> str:
    values = SERVICE.get(key, [])
    assert len(values) == 1, f"[Service] {key}= should be set once, found {values}"
    return values[0]


def verify(unit_dir: Path, name: str = "tuya-events.service") -> subprocess.CompletedProcess:
    # verify exits 0 on unknown keys and values it cannot parse (it only warns): the output is
    # part of the verdict. --recursive-errors=no: other units of this machine do not count.
    return subprocess.run(
        [systemd_analyze(), "verify", "--man=no", "--recursive-errors=no", str(unit_dir / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def problems_of(result: subprocess.CompletedProcess, name: str) -> list[str]:
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if name in line or "tuya-events" in line]


def installable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with its commands pointed at this test run's real ``tuya-events``.

    verify checks that ExecStart= binaries exist; the unit names the documented install path.
    """
    text = UNIT.read_text() if text is None else text
    assert INSTALLED in text
    unit_dir = tmp_path / "units"
    unit_dir.mkdir(exist_ok=True)
    (unit_dir / "tuya-events.service").write_text(text.replace(INSTALLED, str(TUYA_EVENTS)))
    return unit_dir


# -- systemd's own checks ---------------------------------------------------------------------


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    result = verify(installable_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert problems_of(result, "tuya-events.service") == []


def test_systemd_analyze_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: typos, bad values and a missing binary are all reported."""
    broken = UNIT.read_text().replace("Restart=on-failure", "Restart=sometimes")
    broken = broken.replace("WatchdogSec=30s", "WatchdogSecs=30s")
    result = verify(installable_copy(tmp_path, broken))
    problems = problems_of(result, "tuya-events.service")
    assert any("sometimes" in line for line in problems), problems
    assert any("WatchdogSecs" in line for line in problems), problems

    unit_dir = tmp_path / "as-shipped"
    unit_dir.mkdir()
    shutil.copy(UNIT, unit_dir / "tuya-events.service")
    if not Path(INSTALLED).exists():
        missing = verify(unit_dir)
        assert missing.returncode != 0
        assert any(INSTALLED in line for line in problems_of(missing, "tuya-events.service"))


def test_hardening_exposure_stays_low(tmp_path: Path) -> None:
    """``systemd-analyze security`` rates the unit; 1.4 today, fail above 2.0 ("OK" ends at 4)."""
    unit_dir = installable_copy(tmp_path)
    command = [systemd_analyze(), "security", "--offline=yes", "--no-pager"]
    result = subprocess.run(
        [*command, "--threshold=20", str(unit_dir / "tuya-events.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "Overall exposure level for tuya-events.service" in result.stdout

    weakened = "\n".join(
        line
        for line in UNIT.read_text().splitlines()
        if not line.startswith(("SystemCallFilter=", "CapabilityBoundingSet=", "Protect"))
    )
    (tmp_path / "weak").mkdir()
    weak_dir = installable_copy(tmp_path / "weak", weakened)
    weak = subprocess.run(
        [*command, "--threshold=20", str(weak_dir / "tuya-events.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert weak.returncode != 0, "the threshold does not catch a unit without its hardening"


# -- what the daemon relies on ----------------------------------------------------------------


def test_unit_is_a_notify_service_with_a_watchdog() -> None:
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert 0 < parse_duration(one("WatchdogSec")) <= 60


def test_restarts_on_failure_but_not_on_a_configuration_error() -> None:
    assert one("Restart") == "on-failure"
    assert "78" in one("RestartPreventExitStatus").split()
    # 75: stopped by SIGTERM with unfinished messages (redelivered): an orderly stop.
    assert "75" in one("SuccessExitStatus").split()


def test_reload_sends_the_daemon_sighup() -> None:
    """`systemctl reload` reaches Daemon.request_reload (tests/test_reload.py: SIGHUP)."""
    assert shlex.split(one("ExecReload")) == ["/bin/kill", "-HUP", "$MAINPID"]


def test_commands_are_real_subcommands_with_real_options() -> None:
    pre = shlex.split(one("ExecStartPre"))
    start = shlex.split(one("ExecStart"))
    assert pre[0] == start[0] == INSTALLED
    pre_args = build_parser().parse_args(pre[1:])
    assert pre_args.command == "check-config"
    assert pre_args.quiet is True
    assert pre_args.config == "/etc/tuya-events/config.yaml"
    start_args = build_parser().parse_args(start[1:])
    assert start_args.command == "run"
    assert start_args.config == "/etc/tuya-events/config.yaml"


def test_stop_timeout_outlasts_the_drain_of_the_sample_configuration(tmp_path: Path) -> None:
    settings = sample_settings(tmp_path)
    assert one("KillSignal") == "SIGTERM"
    stop_timeout = parse_duration(one("TimeoutStopSec"))
    assert stop_timeout >= settings.consumer.shutdown_timeout + 10
    # Connecting may take operation_timeout before `run` gives up with exit 69.
    assert parse_duration(one("TimeoutStartSec")) > settings.consumer.operation_timeout


def test_secret_is_a_credential_and_state_is_the_state_directory() -> None:
    assert one("LoadCredential") == "access_secret:/etc/tuya-events/access_secret"
    assert one("DynamicUser") == "yes"
    assert one("StateDirectory") == "tuya-events"
    assert one("WorkingDirectory") == "/var/lib/tuya-events"
    assert one("UMask") == "0077"


def test_hardening_settings_are_present() -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "CapabilityBoundingSet": "",
    }
    assert {key: one(key) for key in expected} == expected
    assert one("RestrictAddressFamilies").split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert "@system-service" in SERVICE["SystemCallFilter"]


# -- the sample configuration, as the service sees it -----------------------------------------


def service_environment(tmp_path: Path) -> dict[str, str]:
    """What systemd gives ExecStartPre= and ExecStart=: credentials and the state directory."""
    credentials = tmp_path / "credentials"
    state = tmp_path / "state"
    credentials.mkdir(exist_ok=True)
    state.mkdir(exist_ok=True)
    (credentials / "access_secret").write_text(SECRET + "\n")
    return {"CREDENTIALS_DIRECTORY": str(credentials), "STATE_DIRECTORY": str(state)}


def sample_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    tree = yaml.safe_load(SAMPLE_CONFIG.read_text())
    return settings_from_mapping(tree, service_environment(tmp_path), source=str(SAMPLE_CONFIG))


def test_sample_configuration_reads_the_credential_and_the_state_directory(tmp_path: Path) -> None:
    settings = sample_settings(tmp_path)
    assert settings.tuya.access_secret.get_secret_value() == SECRET
    assert settings.dead_letter.path == str(tmp_path / "state" / "dead-letters.sqlite3")


def test_the_device_catalogue_lands_in_the_state_directory(tmp_path: Path) -> None:
    """The only directory the unit lets the service write (ProtectSystem=strict): the sample
    names it as state.directory, and the catalogue file is created there."""
    settings = sample_settings(tmp_path)
    state = tmp_path / "state"
    assert settings.state.directory == str(state)
    assert settings.catalogue.path is None, "catalogue.path would leave the state directory"
    assert catalogue_path(settings) == state / "catalogue.sqlite3"
    with CatalogueStore(catalogue_path(settings)) as store:
        assert store.load() == []
    assert (state / "catalogue.sqlite3").is_file()
    assert state_directory(settings) == state
    # Outside the service (root running `devices list` by hand): the unit's state directory.
    tree = yaml.safe_load(SAMPLE_CONFIG.read_text())
    unit_state = f"/var/lib/{one('StateDirectory')}"
    assert unit_state == one("WorkingDirectory")
    assert tree["state"]["directory"] == f"${{STATE_DIRECTORY:-{unit_state}}}"
    outside = settings_from_mapping(
        tree, {"CREDENTIALS_DIRECTORY": str(tmp_path / "credentials")}, source="sample"
    )
    assert catalogue_path(outside) == Path(unit_state) / "catalogue.sqlite3"
    assert "catalogue" in UNIT.read_text(), "the unit's comments name what the state holds"


def test_outside_the_service_the_sample_configuration_reads_the_files_themselves() -> None:
    """Root running check-config or dlq by hand has no $CREDENTIALS_DIRECTORY."""
    tree = yaml.safe_load(SAMPLE_CONFIG.read_text())
    tree["tuya"]["access_secret_file"] = tree["tuya"]["access_secret_file"].replace(
        "/etc/tuya-events", "/nonexistent/tuya-events"
    )
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(tree, {}, source="sample")
    assert "/nonexistent/tuya-events/access_secret" in caught.value.render()
    tree = yaml.safe_load(SAMPLE_CONFIG.read_text())
    assert (
        tree["dead_letter"]["path"]
        == "${STATE_DIRECTORY:-/var/lib/tuya-events}/dead-letters.sqlite3"
    )


def test_exec_start_pre_passes_the_sample_and_stops_a_broken_one(tmp_path: Path) -> None:
    """check-config as ExecStartPre= runs it: 0 for the sample, 78 (no restart) when broken."""
    pre = shlex.split(one("ExecStartPre"))
    config = tmp_path / "config.yaml"
    config.write_text(SAMPLE_CONFIG.read_text())
    command = [str(TUYA_EVENTS), *pre[1:]]
    command[command.index("/etc/tuya-events/config.yaml")] = str(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUYA_")}
    env.update(service_environment(tmp_path))

    ok = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == "" and ok.stderr == ""  # --quiet

    (tmp_path / "credentials" / "access_secret").unlink()
    broken = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert broken.returncode == 78
    assert "tuya.access_secret_file" in broken.stderr
    assert "78" in one("RestartPreventExitStatus").split()


# -- the unit's seccomp rules with the real daemon ---------------------------------------------

# Three of the unit's settings are seccomp filters that systemd installs before exec
# (src/shared/seccomp-util.c). The same filters are built here from the unit's own values and
# installed by hand in the child before it execs the daemon:
#
# - MemoryDenyWriteExecute=yes: mmap() with PROT_WRITE|PROT_EXEC, mprotect()/pkey_mprotect()
#   adding PROT_EXEC and shmat() with SHM_EXEC fail with EPERM.
# - RestrictAddressFamilies=: socket() with any other family fails with EAFNOSUPPORT.
# - SystemCallFilter= (an allow list, minus the ~ groups) with SystemCallErrorNumber=EPERM and
#   SystemCallArchitectures=native: any other system call fails with EPERM. The groups are
#   expanded by `systemd-analyze syscall-filter`, the numbers come from the kernel headers.
_ARCH = {
    # machine: (AUDIT_ARCH_*, mmap, mprotect, pkey_mprotect, shmat, socket)
    "x86_64": (0xC000003E, 9, 10, 329, 30, 41),
    "aarch64": (0xC00000B7, 222, 226, 288, 196, 198),
}
_UNISTD = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
}
_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10}
_PROT_WRITE_EXEC, _PROT_EXEC, _SHM_EXEC = 0x6, 0x4, 0o100000
_LD_ABS, _JEQ, _JGE, _AND, _RET = 0x20, 0x15, 0x35, 0x54, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_EPERM, _EAFNOSUPPORT = 1, 97
_X32_SYSCALL_BIT = 0x40000000

Program = list[tuple[int, int, int, int]]


def _arch_check(arch: int, otherwise: int) -> Program:
    """A = syscall number, for the native architecture; any other returns ``otherwise``."""
    return [(_LD_ABS, 0, 0, 4), (_JEQ, 1, 0, arch), (_RET, 0, 0, otherwise), (_LD_ABS, 0, 0, 0)]


def _memory_deny_write_execute() -> Program:
    arch, mmap_nr, mprotect_nr, pkey_nr, shmat_nr, _ = _ARCH[platform.machine()]
    program = _arch_check(arch, _ALLOW)
    checks = [
        (mmap_nr, _PROT_WRITE_EXEC),
        (mprotect_nr, _PROT_EXEC),
        (pkey_nr, _PROT_EXEC),
        (shmat_nr, _SHM_EXEC),
    ]
    for number, mask in checks:
        # Not this syscall: skip to the next check. Else load the 3rd argument's low word
        # (offset 32, little-endian), mask it, refuse when all the mask's bits are set.
        program += [
            (_JEQ, 0, 4, number),
            (_LD_ABS, 0, 0, 32),
            (_AND, 0, 0, mask),
            (_JEQ, 0, 1, mask),
            (_RET, 0, 0, _ERRNO | _EPERM),
            (_RET, 0, 0, _ALLOW),
        ]
    return [*program, (_RET, 0, 0, _ALLOW)]


def _restrict_address_families(families: list[int]) -> Program:
    arch, *_, socket_nr = _ARCH[platform.machine()]
    program = [*_arch_check(arch, _ALLOW), (_JEQ, 0, 2 + len(families), socket_nr)]
    program.append((_LD_ABS, 0, 0, 16))  # the 1st argument: the family
    for index, family in enumerate(families):
        program.append((_JEQ, len(families) - index, 0, family))
    program += [(_RET, 0, 0, _ERRNO | _EAFNOSUPPORT), (_RET, 0, 0, _ALLOW)]
    return program


def _syscall_groups() -> dict[str, list[str]]:
    output = subprocess.run(
        [systemd_analyze(), "syscall-filter", "--no-pager"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#") and current is not None:
            current.append(line.strip())
        elif not line.strip():
            current = None
    return groups


def _expand(items: list[str], groups: dict[str, list[str]]) -> set[str]:
    names: set[str] = set()
    for item in items:
        names |= _expand(groups[item], groups) if item.startswith("@") else {item}
    return names


def _syscall_numbers() -> dict[str, int]:
    header = _UNISTD[platform.machine()].read_text()
    found = re.findall(r"^#define __NR(?:3264)?_(\w+)\s+(\d+)\s*$", header, re.MULTILINE)
    return {name: int(number) for name, number in found}


def unit_syscall_allow_list() -> set[str]:
    """The system calls the unit's SystemCallFilter= lines allow, by name."""
    groups = _syscall_groups()
    allowed: set[str] | None = None
    for value in SERVICE["SystemCallFilter"]:
        deny = value.startswith("~")
        names = _expand(value.removeprefix("~").split(), groups)
        if allowed is None:
            assert not deny, "the unit's first SystemCallFilter= is an allow list"
            allowed = names
        else:
            allowed = allowed - names if deny else allowed | names
    assert allowed
    return allowed


def _system_call_filter(allowed: set[str]) -> Program:
    arch = _ARCH[platform.machine()][0]
    numbers = _syscall_numbers()
    assert {"read", "write", "execve"} <= numbers.keys(), "the kernel headers were not read"
    # SystemCallArchitectures=native: other ABIs are killed; x32 numbers on x86_64 too.
    program = _arch_check(arch, 0)  # SECCOMP_RET_KILL_THREAD
    if platform.machine() == "x86_64":
        program.append((_JGE, 0, 1, _X32_SYSCALL_BIT))
        program.append((_RET, 0, 0, 0))
    for number in sorted({numbers[name] for name in allowed if name in numbers}):
        program += [(_JEQ, 0, 1, number), (_RET, 0, 0, _ALLOW)]
    return [*program, (_RET, 0, 0, _ERRNO | _EPERM)]


def _install(program: Program) -> None:
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(program), ctypes.cast(code, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, MODE_FILTER
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP failed")


def unit_seccomp_programs() -> list[Program]:
    """The unit's three filters, built from its settings (asserted above to be what they are)."""
    assert platform.machine() in _ARCH, f"no syscall numbers for {platform.machine()}"
    assert one("MemoryDenyWriteExecute") == "yes"
    assert one("SystemCallArchitectures") == "native"
    assert one("SystemCallErrorNumber") == "EPERM"
    families = [_FAMILIES[name] for name in one("RestrictAddressFamilies").split()]
    # The allow list goes last: installing a filter needs prctl(), which it may not allow.
    return [
        _memory_deny_write_execute(),
        _restrict_address_families(families),
        _system_call_filter(unit_syscall_allow_list()),
    ]


def run_under_the_unit_s_filters(*command: str) -> subprocess.CompletedProcess:
    programs = unit_seccomp_programs()

    def install_all() -> None:  # preexec_fn: in the child, inherited by what it execs
        for program in programs:
            _install(program)

    env = {k: v for k, v in os.environ.items() if not k.startswith("TUYA_")}
    return subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=install_all,
    )


def test_the_filters_refuse_what_the_unit_forbids() -> None:
    """The control: under the filters, what the unit forbids fails and the rest works (so the
    tests below mean something)."""
    probe = (
        "import mmap, os, socket\n"
        "mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE)\n"
        "socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()\n"
        "socket.getaddrinfo('localhost', 80, flags=socket.AI_ADDRCONFIG)\n"
        "print(os.getpriority(os.PRIO_PROCESS, 0) is not None)\n"
        "def refused(call):\n"
        "    try:\n"
        "        call()\n"
        "    except OSError as error:\n"
        "        return error.errno\n"
        f"print(refused(lambda: mmap.mmap(-1, 4096, prot={mmap.PROT_WRITE | mmap.PROT_EXEC})))\n"
        "print(refused(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)))\n"
        "print(refused(lambda: os.setpriority(os.PRIO_PROCESS, 0, 5)))\n"  # @resources
        "print(refused(lambda: os.chown('/nonexistent', 0, 0)))\n"  # @privileged
    )
    result = run_under_the_unit_s_filters(sys.executable, "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "1", "97", "1", "1"]


def test_daemon_runs_under_the_unit_s_seccomp_rules(tmp_path: Path) -> None:
    """The whole pipeline (decrypt, JSON, routing, dead letters, HTTP) under the filters."""
    result = run_under_the_unit_s_filters(
        str(TUYA_EVENTS),
        "demo",
        "--duration",
        "3",
        "--rate",
        "40",
        "--http",
        "127.0.0.1:0",
        "--state-dir",
        str(tmp_path),
        "--seed",
        "7",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    records += [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    finished = [r for r in records if r.get("event") == "demo finished"]
    assert finished, (result.stdout + result.stderr)[-3000:]
    assert finished[0]["messages_sent"] > 50
    # Every message received was acknowledged; the rest were still queued at the stop.
    assert finished[0]["received_not_acknowledged"] == 0
    assert finished[0]["acknowledged"] + finished[0]["still_queued"] == finished[0]["messages_sent"]


def test_pulsar_client_and_database_driver_work_under_the_unit_s_seccomp_rules() -> None:
    """The native parts the demo does not use: Apache's C++ Pulsar client (its threads, name
    resolution and connection attempts), asyncpg, and SQLite in WAL mode."""
    probe = (
        "import asyncpg, pulsar, sqlite3, tempfile, os\n"
        "with tempfile.TemporaryDirectory() as d:\n"
        "    db = sqlite3.connect(os.path.join(d, 'x.sqlite3'))\n"
        "    db.execute('PRAGMA journal_mode = WAL')\n"
        "    db.execute('CREATE TABLE t (x)'); db.commit(); db.close()\n"
        "client = pulsar.Client('pulsar://localhost:9', operation_timeout_seconds=1)\n"
        "try:\n"
        "    client.subscribe('persistent://t/n/topic', 'sub')\n"
        "except pulsar.PulsarException as error:\n"
        "    print('subscribe failed:', type(error).__name__)\n"
        "client.close()\n"
    )
    result = run_under_the_unit_s_filters(sys.executable, "-c", probe)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "subscribe failed: Timeout\n" in result.stdout


# -- Type=notify and WatchdogSec= with the real daemon ------------------------------------------


def test_daemon_speaks_the_notify_protocol_the_unit_expects(tmp_path: Path) -> None:
    """As systemd runs it: $NOTIFY_SOCKET and $WATCHDOG_USEC from WatchdogSec=. READY=1 comes,
    then watchdog pings; SIGTERM brings STOPPING=1 and an exit the unit counts as success,
    well within TimeoutStopSec=."""
    notify_socket = tmp_path / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_socket))
    receiver.settimeout(0.5)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUYA_", "WATCHDOG_"))}
    env["NOTIFY_SOCKET"] = str(notify_socket)
    env["WATCHDOG_USEC"] = str(int(parse_duration(one("WatchdogSec")) * 1_000_000))
    process = start_demo(None, tmp_path, stdout=subprocess.DEVNULL, env=env)
    messages: list[list[str]] = []

    def collect_until(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            try:
                messages.append(receiver.recv(4096).decode().split("\n"))
            except TimeoutError:
                continue

    def sent(line: str) -> bool:
        return any(line in message for message in messages)

    try:
        collect_until(lambda: sent("READY=1") and sent("WATCHDOG=1"), 30)
        assert sent("READY=1"), messages
        assert sent("WATCHDOG=1"), messages
        ready = next(message for message in messages if "READY=1" in message)
        assert any(line.startswith("STATUS=") for line in ready)
        started_stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=parse_duration(one("TimeoutStopSec")))
        stop_took = time.monotonic() - started_stopping
        collect_until(lambda: sent("STOPPING=1"), 2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        receiver.close()
    assert sent("STOPPING=1"), messages
    assert code == 0 or str(code) in one("SuccessExitStatus").split()
    assert stop_took < parse_duration(one("TimeoutStopSec"))
