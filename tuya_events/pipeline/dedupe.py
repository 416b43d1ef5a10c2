"""Which handlers already succeeded for a recently seen message, so redeliveries skip them."""

from __future__ import annotations

from collections import OrderedDict


class RecentlyHandled:
    """A bounded LRU from message key (Tuya ``dataId`` or Pulsar message id) to handler names."""

    __slots__ = ("_entries", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, frozenset[str]] = OrderedDict()

    def succeeded(self, key: str) -> frozenset[str]:
        return self._entries.get(key, frozenset())

    def remember(self, key: str, handlers: frozenset[str]) -> None:
        if self.capacity <= 0 or not handlers:
            return
        entries = self._entries
        entries[key] = handlers
        entries.move_to_end(key)
        if len(entries) > self.capacity:
            entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
