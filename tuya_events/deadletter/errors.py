"""One exception type for every store failure, so callers need not know about sqlite3."""


class DeadLetterStoreError(Exception):
    """The store could not be opened, migrated, read or written; the message says which file."""
