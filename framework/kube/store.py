"""A thread-safe cache of objects keyed ``namespace/name``, with indexes and change handlers."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Dict, Iterable, KeysView, List, Mapping, Optional, Set

from framework.kube.frozen import freeze

log = logging.getLogger(__name__)

Handler = Callable[[str, Optional[dict], Optional[dict]], None]


def key_of(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else meta.get("name", "")


class Store:
    """What a watch has seen. Reads are lock-free; the objects are read-only (``frozen.py``): a
    change raises, and ``framework.thaw(obj)`` gives an editable copy.

    ``indexers`` map an index name to ``fn(obj) -> iterable of values``; ``by_index(name, value)``
    returns the objects with that value. Handlers ``fn(event, old, new)`` (event is ``ADDED``,
    ``MODIFIED`` or ``DELETED``) run on the watch thread after the store is updated: keep them fast.
    """

    def __init__(self, name: str = "", indexers: Optional[Mapping[str, Callable[[dict], Iterable[str]]]] = None):
        self.name = name
        self._lock = threading.RLock()
        self._items: Dict[str, dict] = {}
        self._indexers = dict(indexers or {})
        self._indexes: Dict[str, Dict[str, Set[str]]] = {n: {} for n in self._indexers}
        self._handlers: List[Handler] = []
        self._synced = threading.Event()
        self.resource_version = ""

    # -- reading ---------------------------------------------------------------------------------
    def get(self, key: str) -> Optional[dict]:
        return self._items.get(key)

    def get_by_name(self, name: str, namespace: str = "") -> Optional[dict]:
        return self._items.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> List[dict]:
        return list(self._items.values())

    def keys(self) -> List[str]:
        return list(self._items)

    def by_index(self, index: str, value: str) -> List[dict]:
        keys = self._indexes[index].get(value)
        if not keys:
            return []
        items = self._items
        with self._lock:
            return [items[k] for k in keys if k in items]

    def by_index_any(self, index: str, values: Iterable[str]) -> List[dict]:
        """The objects filed under any of ``values`` (one call for many lookups; an object filed
        under several of them comes once per value)."""
        idx = self._indexes[index]
        items = self._items
        out: List[dict] = []
        for value in values:
            keys = idx.get(value)
            if keys:
                with self._lock:
                    out.extend([items[k] for k in keys if k in items])
        return out

    def index_values(self, index: str) -> List[str]:
        return list(self._indexes[index])

    def indexed(self, index: str) -> KeysView:
        """The values ``index`` files objects under, as a live read-only view (for ``in`` tests on
        every request, without a copy)."""
        return self._indexes[index].keys()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: Optional[float] = None) -> bool:
        return self._synced.wait(timeout)

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    # -- writing (the reflector, or static objects) ----------------------------------------------
    def upsert(self, obj: dict) -> None:
        key = key_of(obj)
        if self._items.get(key) == obj:
            return  # nothing a reader sees changed (a status write the transform leaves out): no event
        obj = freeze(obj)
        with self._lock:
            old = self._items.get(key)
            if old is not None:
                self._unindex(key, old)
            self._items[key] = obj
            self._index(key, obj)
        self._notify("MODIFIED" if old is not None else "ADDED", old, obj)

    def delete(self, obj_or_key) -> None:
        key = obj_or_key if isinstance(obj_or_key, str) else key_of(obj_or_key)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._unindex(key, old)
        if old is not None:
            self._notify("DELETED", old, None)

    def replace(self, objects: Iterable[dict], resource_version: str = "") -> None:
        """Swap in a full list (after a list call); handlers see the differences only."""
        new = {key_of(o): freeze(o) for o in objects}
        with self._lock:
            old = self._items
            self._items = new
            self._indexes = {n: {} for n in self._indexers}
            for key, obj in new.items():
                self._index(key, obj)
            self.resource_version = resource_version
        if self._handlers:
            for key, obj in old.items():
                if key not in new:
                    self._notify("DELETED", obj, None)
            for key, obj in new.items():
                before = old.get(key)
                if before is None:
                    self._notify("ADDED", None, obj)
                elif before != obj:
                    self._notify("MODIFIED", before, obj)
        self._synced.set()

    def _index(self, key: str, obj: dict) -> None:
        for name, fn in self._indexers.items():
            index = self._indexes[name]
            for value in _index_values(fn, obj):
                index.setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: dict) -> None:
        for name, fn in self._indexers.items():
            index = self._indexes[name]
            for value in _index_values(fn, obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _notify(self, event: str, old: Optional[dict], new: Optional[dict]) -> None:
        for handler in self._handlers:
            try:
                handler(event, old, new)
            except Exception:
                log.exception("store %s: handler %r failed on %s", self.name, handler, event)


def _index_values(fn, obj) -> Iterable[str]:
    try:
        return fn(obj) or ()
    except Exception:
        log.exception("indexer %r failed on %s", fn, key_of(obj))
        return ()
