"""A bounded LRU mapping with hit / miss / eviction counters (every enrichment cache is one)."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, Iterator, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `max_entries` entries; using an entry makes it the most recent, inserting into a full
    cache evicts the least recent one (and calls `on_evict(key, value)` if given).

    Counters: hits and misses of `get`, evictions, and the current size, from `stats()`.
    """

    def __init__(self, max_entries: int, on_evict: Callable[[K, V], None] | None = None):
        if max_entries < 1:
            raise ValueError(f"cache size {max_entries}: at least 1")
        self.max_entries = max_entries
        self.on_evict = on_evict
        self._d: OrderedDict[K, V] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: K, default=None):
        d = self._d
        v = d.get(key, _MISSING)
        if v is _MISSING:
            self.misses += 1
            return default
        self.hits += 1
        d.move_to_end(key)
        return v

    def peek(self, key: K, default=None):
        """The value without counting a hit or a miss or refreshing it."""
        return self._d.get(key, default)

    def put(self, key: K, value: V) -> None:
        d = self._d
        if key in d:
            d.move_to_end(key)
        d[key] = value
        while len(d) > self.max_entries:
            k, v = d.popitem(last=False)
            self.evictions += 1
            if self.on_evict is not None:
                self.on_evict(k, v)

    def pop(self, key: K, default=None):
        return self._d.pop(key, default)

    def __contains__(self, key) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)

    def __iter__(self) -> Iterator[K]:
        return iter(self._d)

    def items(self):
        return self._d.items()

    def clear(self) -> None:
        self._d.clear()

    def stats(self) -> dict[str, int]:
        return {"size": len(self._d), "max": self.max_entries, "hits": self.hits,
                "misses": self.misses, "evictions": self.evictions}


_MISSING = object()
