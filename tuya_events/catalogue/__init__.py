"""The device catalogue: what the cloud project's devices are, kept locally, shared by the daemon.

``directory`` asks the OpenAPI, ``store`` keeps the answers in SQLite, ``catalogue`` decides when
to ask (quota-aware), and ``enrich`` puts the answers on events.
"""
