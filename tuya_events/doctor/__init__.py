"""``tuya-events doctor``: check, in order, everything that makes messages arrive or not, and
say under every failure what to do (docs/troubleshooting.md).

The checks live in :mod:`tuya_events.doctor.runner` and the modules it runs; this package's
top level stays light, since every command's parser names the groups.
"""

OPENAPI, MESSAGES, HANDLERS, LOCAL = "openapi", "messages", "handlers", "local"
GROUPS = (OPENAPI, MESSAGES, HANDLERS, LOCAL)

__all__ = ["GROUPS", "HANDLERS", "LOCAL", "MESSAGES", "OPENAPI"]
