"""The dead-letter store: every message that could not be handled, kept durably with its reason.

A message is acknowledged only after its handlers succeeded or after :meth:`DeadLetterStore.put`
returned, so this store is what makes "nothing lost" true for failures.
"""

from tuya_events.deadletter.errors import DeadLetterStoreError
from tuya_events.deadletter.filters import RecordFilter, parse_time
from tuya_events.deadletter.record import DeadLetterRecord
from tuya_events.deadletter.store import DeadLetterStore

__all__ = [
    "DeadLetterRecord",
    "DeadLetterStore",
    "DeadLetterStoreError",
    "RecordFilter",
    "parse_time",
]
