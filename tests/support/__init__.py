"""What several test modules share, one copy each.

- ``ports``: free loopback ports (below the ephemeral range), for every server a test starts.
- ``paths``: the checkout, the installed ``tuya-events`` command, a child environment that can
  import the tests' handler modules.
- ``waiting``: waiting for a condition with a deadline, in an event loop and in plain threads.
- ``http``: ``http_get`` against a server on 127.0.0.1.
- ``servers``: a real aiohttp server in a thread (the base of the OpenAPI and webhook
  stand-ins), ``serving`` to stop every one started, ``StatusServer`` for a failing endpoint.
- ``pki``: a throwaway CA and a server certificate it signed.
- ``logs``: the daemon's real logging captured as JSON lines (the ``captured_logs`` fixture).
- ``settings``: the configuration in-process tests start from (``make_settings``), and the
  routes built from it (``routes_of``).
- ``metrics``: metric samples from a registry (``handler_outcomes``).
- ``events``: Tuya documents and the (event, delivery) pairs a handler is handed.
- ``recorder``: the FileRecorder handler (``type: tests.support.recorder:FileRecorder``).
- ``cli``: ``tuya-events`` as a child process (``run_cli``, the demo, ``dlq list``).
- ``daemon``: ``tuya-events run`` on the test broker (``DaemonProcess``) and the scenarios made
  of it (``BrokerRun``, the ``broker_run`` fixture).
- ``producer``: raw sends to the test broker; ``sources``: a PulsarSource on a test tenant.
- ``fixtures``: the shared pytest fixtures (a plugin listed in tests/conftest.py).

tests/pipeline_support.py, tests/webhook_receiver.py, tests/fake_tuya_openapi.py and
tests/vectors.py keep their paths: the benchmarks and the README name them.
"""
