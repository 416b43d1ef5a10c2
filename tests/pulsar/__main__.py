"""``python -m tests.pulsar prepare|start``: build the test broker, or run one by hand.

``prepare`` resolves the classpath and compiles the auth provider (cached; `make test` calls it).
``start`` runs a broker until Ctrl-C, with a Tuya tenant for the given key pair, for development
and benchmarks.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from tests.support.ports import free_ports
from tuya_events.tuya.auth import pulsar_password

from .broker import BrokerPorts, PulsarBroker, log_to_stderr
from .build import PrepareError, prepare
from .credentials import TuyaCredentials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.pulsar", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("prepare", help="resolve the broker classpath and compile the provider")
    start = commands.add_parser("start", help="run a broker until Ctrl-C")
    start.add_argument("--access-id", help="Tuya access id (default: a new random one)")
    start.add_argument("--access-secret", help="Tuya access secret (default: a new random one)")
    start.add_argument("--broker-port", type=int, help="binary protocol port (default: free)")
    start.add_argument("--web-port", type=int, help="admin/WebSocket port (default: free)")
    start.add_argument("--bookie-port", type=int, help="bookie port (default: free)")
    args = parser.parse_args(argv)
    try:
        classpath = prepare(log_to_stderr)
    except PrepareError as error:
        print(error, file=sys.stderr)
        return 1
    if args.command == "prepare":
        return 0
    return _run(classpath, args)


def _run(classpath, args: argparse.Namespace) -> int:
    generated = TuyaCredentials.generate()
    credentials = TuyaCredentials(
        args.access_id or generated.access_id, args.access_secret or generated.access_secret
    )
    spare = iter(free_ports(4))
    ports = BrokerPorts(
        broker=args.broker_port or next(spare),
        web=args.web_port or next(spare),
        bookie=args.bookie_port or next(spare),
        broker_tls=next(spare),
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with PulsarBroker(classpath, ports=ports, log=log_to_stderr) as broker:
        broker.start()
        tenant = broker.create_tenant(credentials)
        print(
            f"broker_url     {broker.broker_url}\n"
            f"broker_tls_url {broker.broker_tls_url} (CA: {broker.tls.ca_cert})\n"
            f"admin_url      {broker.admin_url}\n"
            f"websocket_url  {broker.websocket_url}\n"
            f"access_id      {tenant.access_id}\n"
            f"access_secret  {tenant.access_secret}\n"
            f"password       {pulsar_password(tenant.access_id, tenant.access_secret)}\n"
            f"topic          {tenant.topic()} (11 partitions), {tenant.topic('event-test')} (1)\n"
            f"notice topic   {tenant.topic('notice')}\n"
            f"subscription   {tenant.subscription}\n"
            f"ws consumer    {tenant.websocket_consumer_url()}\n"
            f"workdir        {broker.workdir} (log: {broker.log_path})\n"
            "Ctrl-C stops the broker and deletes its directory.",
            flush=True,
        )
        try:
            while not stopping.wait(1.0):
                if not broker.is_running():
                    print(f"the broker died; log tail:\n{broker.log_tail()}", file=sys.stderr)
                    return 1
        except KeyboardInterrupt:
            pass
        print("stopping the broker ...", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
