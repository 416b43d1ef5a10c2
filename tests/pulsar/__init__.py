"""Helpers that run a real Apache Pulsar broker for the tests.

- ``build``: resolve the broker's classpath from Maven Central and compile the Java auth
  provider (``python -m tests.pulsar prepare``), cached in ``tests/pulsar/.cache``.
- ``broker``: :class:`~tests.pulsar.broker.PulsarBroker`, one standalone broker (with its bookie)
  on free loopback ports; stop/start keep ports and data.
- ``credentials``, ``admin``, ``tenant``: Tuya key pairs the broker accepts, its REST API, and a
  Tuya-shaped tenant (``{ACCESS_ID}/out/event`` with 11 partitions, ``event-test`` with 1, and
  the notice topic ``notice``).
- ``publisher``, ``traffic``: publish Tuya-encrypted envelopes keyed by device, and check that a
  consumer got every message once, in per-device order.
- ``fixtures``: the pytest fixtures built on these (listed in tests/conftest.py).
"""
