"""``type: database``: events, latest status per data point and device events in SQLite or
PostgreSQL, written in batches, acknowledged only once committed."""

from tuya_events.handlers.database.handler import DatabaseHandler
from tuya_events.handlers.database.options import DatabaseOptions

__all__ = ["DatabaseHandler", "DatabaseOptions"]
