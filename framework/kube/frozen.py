"""Read-only dicts and lists: what a :class:`~framework.kube.store.Store` holds.

Caches are shared by every request and plugin. A mutator that edited a cached object in place,
or put it into the pod where a later mutator edited it, would change the cache itself, and
every later pod would see it. Cached objects are therefore frozen: they read like dicts and lists
(they are subclasses, so ``json``, orjson and ``isinstance`` treat them as such) and any change
raises :class:`ReadOnlyError`. ``thaw(obj)`` (or ``copy.deepcopy``) gives an editable copy.

Being read-only, identical parts of cached objects can be one object: ``freeze`` keeps strings
interned and each distinct small part (a label set, a toleration, a list of them) once, however
many cached objects hold it. The pods of one ReplicaSet carry the same labels and the same default
tolerations, so a cache of pods is mostly shared parts (see :class:`Shared`).
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Dict


class ReadOnlyError(TypeError):
    def __init__(self, kind: str):
        super().__init__(f"this {kind} belongs to a cache and is read-only: edit a copy "
                         f"(framework.thaw(obj) or copy.deepcopy(obj))")


class _ReadOnly:
    """What a frozen dict and a frozen list share: copies are plain, editable ones."""

    __slots__ = ()
    _plain: type

    def _readonly(self, *args, **kwargs):
        raise ReadOnlyError(self._plain.__name__)

    def __copy__(self):
        return self._plain(self)

    def __deepcopy__(self, memo) -> Any:
        return thaw(self)

    def __reduce__(self):
        return self._plain, (self._plain(self),)


class FrozenDict(_ReadOnly, dict):
    __slots__ = ()
    _plain = dict
    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _ReadOnly._readonly


class FrozenList(_ReadOnly, list):
    __slots__ = ()
    _plain = list
    __setitem__ = __delitem__ = __iadd__ = __imul__ = append = extend = insert = pop = remove = clear = \
        sort = reverse = _ReadOnly._readonly


#: Parts with more entries than this are kept as they are: a large part is seldom repeated exactly.
SHARED_MAX_ENTRIES = 32
#: Strings longer than this are kept as they are (interning is for names, labels, keys).
SHARED_MAX_STRING = 256
#: Distinct integers kept once (ports, sizes, seconds); a few kilobytes.
SHARED_MAX_NUMBERS = 4096
_SHAREABLE = frozenset((str, int, float, bool, type(None), FrozenDict, FrozenList))
intern = sys.intern


class _Key:
    """A part as a key of :class:`Shared`: what it is made of, its kind then its keys and values
    as objects (by id; they live as long as the part). Its strings are interned and its parts
    shared, so identical content is identical objects, and ``1``, ``1.0`` and ``True`` (equal in
    Python, not in JSON) stay apart. ``ids`` is kept only while the key is looked up."""

    __slots__ = ("obj", "hash", "ids")

    def __init__(self, obj, ids: tuple):
        self.obj, self.ids, self.hash = obj, ids, hash(ids)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other) -> bool:
        return (self.ids or _identity(self.obj)) == (other.ids or _identity(other.obj))


def _identity(part) -> tuple:
    if type(part) is FrozenDict:
        return (1, *map(id, part), *map(id, part.values()))
    return (0, *map(id, part))


class Shared:
    """The parts of cached objects kept once: at most one read-only part of each content, one
    object for each string (interned) and each integer.

    A part that no cached object holds any more leaves the table at the next sweep, which runs
    when the table has doubled since the last one (it counts references: CPython's)."""

    def __init__(self):
        self.parts: Dict[_Key, Any] = {}
        self.numbers: Dict[int, int] = {}
        self._sweep_at = 1024
        self._sweeping = threading.Lock()

    def __len__(self) -> int:
        return len(self.parts)

    def part(self, frozen, ids: tuple):
        """The one part made of what ``frozen`` is made of (``ids``, as :class:`_Key` says)."""
        key = _Key(frozen, ids)
        found = self.parts.setdefault(key, frozen)  # atomic: watches freeze on several threads
        key.ids = None
        if len(self.parts) >= self._sweep_at and self._sweeping.acquire(blocking=False):
            try:
                self._sweep()
            finally:
                self._sweeping.release()
        return found

    def number(self, value: int) -> int:
        """One object for each integer (Python keeps one for -5 to 256 only); new numbers stop
        being kept after ``SHARED_MAX_NUMBERS``."""
        found = self.numbers.get(value)
        if found is None:
            if len(self.numbers) >= SHARED_MAX_NUMBERS:
                return value
            found = self.numbers.setdefault(value, value)
        return found

    def _sweep(self) -> None:
        # Newest first: a part is added after the parts it holds, so dropping it first lets
        # those go in the same sweep. Referenced only by the table (and here): no object holds it.
        keys = list(reversed(self.parts))
        for i in range(len(keys)):
            key, keys[i] = keys[i], None
            if sys.getrefcount(key.obj) <= 3:  # key.obj, the table's value, the argument
                self.parts.pop(key, None)
            del key
        self._sweep_at = max(1024, 2 * len(self.parts))


#: What every store's objects share.
SHARED = Shared()


def freeze(obj: Any, shared: Shared = SHARED) -> Any:
    """``obj`` with every dict and list in it made read-only (other values are kept as they are),
    strings interned and small parts shared with the other frozen objects (``shared``). What is
    frozen already (only this function makes frozen parts) is returned as it is."""
    kind = type(obj)
    if kind is dict:
        # Strings (most values) inline: a call for each costs as much as the rest.
        frozen = FrozenDict({(intern(key) if type(key) is str and len(key) <= SHARED_MAX_STRING else key):
                             (intern(value) if type(value) is str and len(value) <= SHARED_MAX_STRING
                              else _freeze_value(value, shared)) for key, value in obj.items()})
        if len(frozen) > SHARED_MAX_ENTRIES or "metadata" in frozen or "uid" in frozen:
            return frozen  # large, seldom repeated; or an object or its metadata: one of a kind
        values = frozen.values()
        if not _SHAREABLE.issuperset(map(type, values)):
            return frozen  # holds what a transform made (a compiled selector)
        return shared.part(frozen, _identity(frozen))
    if kind is list:
        frozen = FrozenList([_freeze_value(value, shared) for value in obj])
        if len(frozen) > SHARED_MAX_ENTRIES or not _SHAREABLE.issuperset(map(type, frozen)):
            return frozen
        return shared.part(frozen, _identity(frozen))
    return _freeze_value(obj, shared)


def _freeze_value(value: Any, shared: Shared) -> Any:
    kind = type(value)
    if kind is str:
        return intern(value) if len(value) <= SHARED_MAX_STRING else value
    if kind is dict or kind is list:
        return freeze(value, shared)
    if kind is int:
        return shared.number(value)
    return value


def thaw(obj: Any) -> Any:
    """An editable copy of ``obj``: its dicts and lists (read-only or not) copied, all the way down."""
    if isinstance(obj, dict):
        return {k: thaw(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [thaw(v) for v in obj]
    return obj
