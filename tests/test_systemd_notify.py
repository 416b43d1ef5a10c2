"""The systemd notify protocol against a real unix datagram socket, as systemd listens."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from tests.support.cli import start_demo
from tests.support.ports import free_port
from tuya_events.observability.systemd import SystemdNotifier


def test_notifier_speaks_the_protocol_and_handles_abstract_addresses(tmp_path: Path) -> None:
    name = f"@tuya-events-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name[1:])
        listener.settimeout(5)
        notifier = SystemdNotifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "200000"})
        assert notifier.watchdog_interval == 0.1
        notifier.ready("consuming")
        assert listener.recv(4096) == b"READY=1\nSTATUS=consuming"
        notifier.watchdog()
        notifier.watchdog()  # within the interval: not sent again
        time.sleep(0.11)
        notifier.watchdog()
        assert listener.recv(4096) == b"WATCHDOG=1"
        assert listener.recv(4096) == b"WATCHDOG=1"
        listener.setblocking(False)
        try:
            extra = listener.recv(4096)
        except BlockingIOError:
            extra = None
        assert extra is None
        notifier.close()


def test_watchdog_only_for_our_pid_and_silence_without_a_socket() -> None:
    assert (
        SystemdNotifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    )
    quiet = SystemdNotifier({})
    assert not quiet.enabled and quiet.notify("READY=1") is False


def test_daemon_notifies_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(20)
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}
        demo = start_demo(
            free_port(), tmp_path, "--duration", "3", stdout=subprocess.DEVNULL, env=env
        )
        messages: list[bytes] = []
        try:
            while True:
                message = listener.recv(4096)
                messages.append(message)
                if message.startswith(b"STOPPING=1"):
                    break
        finally:
            assert demo.wait(30) == 0
    assert messages[0].startswith(b"READY=1\nSTATUS=consuming")
    assert messages.count(b"WATCHDOG=1") >= 4  # every 0.5 s over ~3 s
    assert messages[-1].startswith(b"STOPPING=1\nSTATUS=stopping")
    assert messages.index(messages[0]) < messages.index(b"WATCHDOG=1")
