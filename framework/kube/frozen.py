"""Read-only dicts and lists: what a :class:`~framework.kube.store.Store` holds.

Caches are shared by every request and plugin. A mutator that edited a cached object in place,
or put it into the pod where a later mutator edited it, would change the cache itself, and
every later pod would see it. Cached objects are therefore frozen: they read like dicts and lists
(they are subclasses, so ``json``, orjson and ``isinstance`` treat them as such) and any change
raises :class:`ReadOnlyError`. ``thaw(obj)`` (or ``copy.deepcopy``) gives an editable copy.
"""

from __future__ import annotations

from typing import Any


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


def freeze(obj: Any) -> Any:
    """``obj`` with every dict and list in it made read-only (other values are kept as they are)."""
    kind = type(obj)
    if kind is dict or kind is FrozenDict:
        return FrozenDict({k: freeze(v) for k, v in obj.items()})
    if kind is list or kind is FrozenList:
        return FrozenList([freeze(v) for v in obj])
    return obj


def thaw(obj: Any) -> Any:
    """An editable copy of ``obj``: its dicts and lists (read-only or not) copied, all the way down."""
    if isinstance(obj, dict):
        return {k: thaw(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [thaw(v) for v in obj]
    return obj
