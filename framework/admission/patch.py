"""One JSONPatch (RFC 6902) from the object as received to the object as the mutators left it.

``jsonpatch.make_patch`` walks the whole object in Python (~0.5 ms for a 6.5 KB pod), and a deep
copy to diff against costs as much again. Instead, before the mutators run, a :class:`Snapshot`
keeps the object's subtrees *encoded* (orjson, a few µs): mutators then edit the object itself,
and afterwards only the subtrees whose encoding changed are decoded and diffed. Comparing
encodings also keeps ``1``, ``1.0`` and ``true`` apart, which Python's ``==`` does not.
The result is checked against ``jsonpatch.apply_patch`` in the tests.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import orjson

from framework.kube.frozen import thaw

# Encoded subtrees are kept down to this depth (pod -> spec -> tolerations): deep enough that a
# change decodes only a small part, shallow enough that taking the snapshot stays cheap.
SNAPSHOT_DEPTH = 2

Node = Union[bytes, Dict[str, Any], str, int, float, bool, None]
_SCALARS = frozenset((str, int, float, bool, type(None)))


def clone(obj: Any) -> Any:
    """A deep copy of a JSON document (several times faster than ``copy.deepcopy``)."""
    return orjson.loads(orjson.dumps(obj))


def pointer(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}/{key}"
    return path + "/" + key.replace("~", "~0").replace("/", "~1")


def _container_kind(value: Any):
    """dict or list for those and their subclasses (read-only cached objects), and list for a
    tuple (sent as a JSON array); else None."""
    kind = type(value)
    if kind is dict or kind is list:
        return kind
    return dict if isinstance(value, dict) else list if isinstance(value, (list, tuple)) else None


def _same(old: Any, new: Any) -> bool:
    # ``True == 1 == 1.0`` in Python; JSON keeps them apart. Scalars of different types differ,
    # and containers that compare equal are confirmed by their encodings (still C speed), since
    # ``{"a": 1} == {"a": True}``. Key order is no change: compare sorted if the order differs.
    if old is new:
        return True
    kind = type(old)
    if kind is not type(new):  # a read-only (cached) dict or list is still a dict or a list
        kind = _container_kind(old)
        if kind is None or kind is not _container_kind(new):
            return False
    if old != new:
        return False
    if kind is dict or kind is list:
        return (orjson.dumps(old) == orjson.dumps(new)
                or orjson.dumps(old, option=orjson.OPT_SORT_KEYS) == orjson.dumps(new, option=orjson.OPT_SORT_KEYS))
    return True


class Snapshot:
    """An object's state, kept as encodings of its subtrees rather than as a copy.

    The tree mirrors the object down to ``depth``: dicts stay dicts, scalars stay as they are
    (they are immutable), and any deeper container becomes its orjson encoding. With ``paths``
    (tuples of keys), only those subtrees are kept, each as one encoding: what the mutators
    declared they change. Most admissions change none or few of them, and an unchanged subtree
    is then recognised by one ``orjson.dumps`` and a bytes comparison.
    """

    __slots__ = ("tree", "paths")

    def __init__(self, obj: Any, depth: int = SNAPSHOT_DEPTH, paths: Optional[Iterable[Tuple[str, ...]]] = None):
        self.paths = None
        self.tree = None
        if paths is None:
            self.tree = _encode(obj, depth)
        else:
            self.paths = [(keys, _encode_at(obj, keys)) for keys in paths]

    @classmethod
    def covers(cls, obj: Any, parents: Iterable[Tuple[str, ...]]) -> bool:
        """Whether each of ``parents`` (the declared paths' parents) exists as an object in ``obj``
        (else snapshot it all)."""
        if type(obj) is not dict:
            return False
        for keys in parents:
            if type(_walk(obj, keys)) is not dict:
                return False
        return True

    def restore(self, obj: Any = None) -> Any:
        """The object as it was: a fresh copy, or with ``paths``, ``obj`` with those parts put back."""
        if self.paths is None:
            return _decode(self.tree)
        for keys, node in self.paths:
            _put_back(obj, keys, node)
        return obj

    def restore_parts(self, obj: Any, parts: Iterable[str]) -> None:
        """Put the dotted ``parts`` (as :meth:`changed` names them) back in ``obj`` as they were."""
        for part in parts:
            keys = tuple(part.split("."))
            _put_back(obj, keys, self._node(keys))

    def renew(self, obj: Any, parts: Iterable[str]) -> Any:
        """``obj`` with the dotted ``parts`` replaced by fresh copies of what this snapshot holds.

        Taken after a mutator, so that nothing in the object is shared with a cache or with a
        plugin's own data when the next mutator edits it in place; read-only containers (cached
        objects) on the way to a part are replaced by editable copies too."""
        if type(obj) is not dict and isinstance(obj, dict):
            obj = thaw(obj)
        for part in parts:
            keys = tuple(part.split("."))
            parent = obj
            for key in keys[:-1]:
                child = parent.get(key) if type(parent) is dict else None
                if type(child) is not dict and isinstance(child, dict):
                    child = parent[key] = thaw(child)
                parent = child
            if type(parent) is dict and keys[-1]:
                node = self._node(keys)
                _put(parent, keys[-1], node if node is MISSING else _decode(node))
        return obj

    def _node(self, keys: Tuple[str, ...]) -> Node:
        if self.paths is not None:
            return next((node for path, node in self.paths if path == keys), MISSING)
        node: Node = self.tree
        for key in keys:
            node = node.get(key, MISSING) if type(node) is dict else MISSING
        return node

    def unchanged_outside(self, whole: bytes, obj: Any) -> bool:
        """With ``paths``: whether ``obj`` equals the object encoded as ``whole`` everywhere but in
        the paths (which are swapped back to how they were for one encoding, then restored)."""
        saved = []
        for keys, node in self.paths:
            parent = _walk(obj, keys[:-1])
            if type(parent) is not dict:
                return False
            saved.append((keys, parent.get(keys[-1], MISSING)))
            _put_back(obj, keys, node)
        try:
            return orjson.dumps(obj) == whole
        finally:
            for keys, value in reversed(saved):
                _put(_walk(obj, keys[:-1]), keys[-1], value)

    def changed(self, later: "Snapshot") -> List[str]:
        """The parts (as dotted paths, to the snapshot's depth) that differ in ``later``, a snapshot
        of the same object taken the same way."""
        if self.paths is not None:
            return [".".join(keys) for (keys, a), (_, b) in zip(self.paths, later.paths) if not _same_node(a, b)]
        out: List[str] = []
        _changed_nodes(self.tree, later.tree, "", out)
        return out

    def diff(self, new: Any) -> List[dict]:
        """The operations that turn the object as it was into ``new``."""
        ops: List[dict] = []
        if self.paths is None:
            _diff_node(self.tree, new, "", ops)
            return ops
        for keys, node in self.paths:
            parent = _walk(new, keys[:-1])
            if type(parent) is not dict:
                raise ValueError(f"{'.'.join(keys[:-1])} was removed or replaced, outside the declared paths")
            value = parent.get(keys[-1], MISSING)
            if type(node) is bytes and _container_kind(value):
                if orjson.dumps(value) != node:
                    _diff(orjson.loads(node), value, _pointer_of(keys), ops)
                continue  # else unchanged, the common case
            path = _pointer_of(keys)
            if node is MISSING:
                if value is not MISSING:
                    ops.append({"op": "add", "path": path, "value": value})
            elif value is MISSING:
                ops.append({"op": "remove", "path": path})
            else:
                _diff_node(node, value, path, ops)
        return ops

    def changes(self, later: "Snapshot", obj: Any, leaves: bool = False, ops: bool = True) -> "Changes":
        """What was done to ``obj`` since this snapshot, ``later`` being a snapshot of ``obj`` as it
        is now (taken the same way): the parts that differ (as :meth:`changed` names them), the
        operations from this state to ``obj`` (unless not ``ops``; as :meth:`diff` makes them, from
        the two snapshots rather than by encoding ``obj`` again) and, with ``leaves``, the JSON
        pointers of the values set and removed, leaf by leaf (an empty object or list counts as a
        leaf; list entries are followed by index). Raises :class:`NotJSON` for a value set that
        JSON cannot carry.

        Only the parts whose encodings differ are looked at: the rest is as it was, and what was
        there before passed this same check (or came decoded from JSON). A value that encodes as
        exactly what it replaced (an ``IntEnum`` for the same number) is no change: nothing of it
        reaches a patch."""
        out = Changes(leaves, ops)
        if self.paths is None:
            _changes_node(self.tree, later.tree, obj, "", "", out)
            return out
        for (keys, a), (_, b) in zip(self.paths, later.paths):
            if not _same_node(a, b):
                if type(_walk(obj, keys[:-1])) is not dict:
                    raise ValueError(f"{'.'.join(keys[:-1])} was removed or replaced, outside the declared paths")
                out.parts.append(".".join(keys))
                _changes(_decode(a), _walk(obj, keys), _pointer_of(keys), out.ops, out.written, out.removed)
        return out

    def diff_to(self, later: "Snapshot") -> List[dict]:
        """The operations from this state to ``later``, a snapshot of the same object taken the
        same way (without the object itself, which someone else may be editing)."""
        if self.paths is None:
            return self.diff(later.restore())
        ops: List[dict] = []
        for (keys, node), (_, new) in zip(self.paths, later.paths):
            if _same_node(node, new):
                continue
            path = _pointer_of(keys)
            if node is MISSING:
                ops.append({"op": "add", "path": path, "value": _decode(new)})
            elif new is MISSING:
                ops.append({"op": "remove", "path": path})
            else:
                _diff_node(node, _decode(new), path, ops)
        return ops


_pointers: Dict[Tuple[str, ...], str] = {}


def _pointer_of(keys: Tuple[str, ...]) -> str:
    """The JSON pointer of a declared path (few and fixed: kept once computed)."""
    found = _pointers.get(keys)
    if found is None:
        found = "".join(pointer("", k) for k in keys)
        if len(_pointers) < 4096:
            _pointers[keys] = found
    return found


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


def _walk(obj: Any, keys: Tuple[str, ...]) -> Any:
    for key in keys:
        if type(obj) is not dict:
            return MISSING
        obj = obj.get(key, MISSING)
    return obj


def _put(parent: dict, key: str, value: Any) -> None:
    if value is MISSING:
        parent.pop(key, None)
    else:
        parent[key] = value


def _put_back(obj: Any, keys: Tuple[str, ...], node: Node) -> None:
    """Set the part at ``keys`` to what the snapshot ``node`` holds (absent: removed)."""
    parent = _walk(obj, keys[:-1])
    if type(parent) is dict:
        _put(parent, keys[-1], node if node is MISSING else _decode(node))


def _same_node(a: Node, b: Node) -> bool:
    return a is b or (type(a) is type(b) and a == b)


def _changed_nodes(a: Node, b: Node, path: str, out: List[str]) -> None:
    if type(a) is dict and type(b) is dict:
        for key in a.keys() | b.keys():
            _changed_nodes(a.get(key, MISSING), b.get(key, MISSING), f"{path}.{key}" if path else key, out)
    elif not _same_node(a, b):
        out.append(path or ".")


class NotJSON(TypeError):
    """A value that JSON (and so the API server) cannot carry; ``where`` is its JSON pointer and
    what it is (``/metadata/annotations/x (a set)``)."""

    def __init__(self, where: str):
        super().__init__(f"left a value that is not JSON at {where}")
        self.where = where


def not_json_at(value: Any, path: str = "") -> Optional[str]:
    """The JSON pointer (and what it is) of the first value in ``value`` that JSON cannot carry,
    or None."""
    try:
        _leaves(value, path, None)
    except NotJSON as exc:
        return exc.where
    return None


def _not_json_scalar(value: Any) -> Optional[str]:
    """Why ``value``, neither a container nor a string, is not JSON; None when it is.

    JSON has strings, numbers, true, false and null. orjson would quietly encode more (a datetime
    or a UUID as a string, an Enum member as its value, a dataclass as an object, NaN and
    infinities as null): a mutator that leaves one means something the API server would not get,
    so each is refused, named by its type. A subclass of int is a number, as orjson sends it; of
    float (which orjson refuses) or of Enum, not.
    """
    kind = type(value)
    if value is None or kind is bool:
        return None
    if kind is float:
        return None if math.isfinite(value) else f"the float {value!r}, not a JSON number"
    if isinstance(value, enum.Enum):
        return f"a {kind.__name__}, an Enum"
    if isinstance(value, int):
        return None if -2 ** 63 <= value < 2 ** 64 else "an integer too large for JSON numbers"
    return f"a {kind.__name__}"


def _leaves(value: Any, path: str, out: Optional[List[str]]) -> None:
    """Add the JSON pointers of the leaves of ``value`` (at ``path``) to ``out`` (unless None):
    an empty object or list is a leaf itself. Raise :class:`NotJSON` at the first value that is
    not JSON."""
    if type(value) is not str:
        kind = _container_kind(value)
        if kind is dict:
            for key, item in value.items():
                _check_key(key, path)
                _leaves(item, pointer(path, key), out)
            if value:
                return
        elif kind is list:
            for i, item in enumerate(value):
                _leaves(item, f"{path}/{i}", out)
            if value:
                return
        elif not isinstance(value, str) or isinstance(value, enum.Enum):
            problem = _not_json_scalar(value)
            if problem:
                raise NotJSON(f"{path} ({problem})")
    if out is not None:
        out.append(path)


def _check_key(key: Any, path: str) -> None:
    if type(key) is not str and (not isinstance(key, str) or isinstance(key, enum.Enum)):
        raise NotJSON(f"{pointer(path, repr(key))} (a {type(key).__name__} key)")


def _unchanged(old: Any, new: Any) -> bool:
    try:
        return _same(old, new)
    except TypeError:  # not JSON somewhere: a change, to be looked at
        return False


class Changes:
    """What :meth:`Snapshot.changes` found: ``parts``, ``ops`` (None when not wanted), and with
    leaves ``written`` and ``removed`` (else None)."""

    __slots__ = ("parts", "ops", "written", "removed")

    def __init__(self, leaves: bool, ops: bool = True):
        self.parts: List[str] = []
        self.ops: Optional[List[dict]] = [] if ops else None
        self.written: Optional[List[str]] = [] if leaves else None
        self.removed: Optional[List[str]] = [] if leaves else None


def _changes_node(a: Node, b: Node, live: Any, path: str, dotted: str, out: Changes) -> None:
    """:meth:`Snapshot.changes` down the snapshots' trees: ``a`` before, ``b`` now, ``live`` the
    value ``b`` was taken of, at the JSON pointer ``path`` (``dotted`` as :meth:`changed` has it)."""
    if type(a) is not dict or type(b) is not dict:
        if not _same_node(a, b):  # (else the whole object, unchanged)
            out.parts.append(dotted or ".")
            _changes(MISSING if a is MISSING else _decode(a), live, path, out.ops, out.written, out.removed)
        return
    for key, node in b.items():
        old = a.get(key, MISSING)
        # The common case, unchanged, decided inline. Dicts are walked, never compared: ``==``
        # would call {"a": 1} and {"a": True} the same.
        kind = type(node)
        if kind is dict:
            if type(old) is dict:
                _changes_node(old, node, live[key], pointer(path, key), f"{dotted}.{key}" if dotted else key, out)
                continue
        elif type(old) is kind and old == node:
            continue
        if old is MISSING:
            _check_key(key, path)  # no encoding saw the keys of a dict at this depth
            out.parts.append(f"{dotted}.{key}" if dotted else key or ".")
            value, where = live[key], pointer(path, key)
            _leaves(value, where, out.written)
            if out.ops is not None:
                out.ops.append({"op": "add", "path": where, "value": value})
        else:
            _changes_node(old, node, live[key], pointer(path, key), f"{dotted}.{key}" if dotted else key, out)
    if not a.keys() <= b.keys():
        for key, old in a.items():
            if key not in b:
                out.parts.append(f"{dotted}.{key}" if dotted else key or ".")
                where = pointer(path, key)
                if out.ops is not None:
                    out.ops.append({"op": "remove", "path": where})
                if out.removed is not None:
                    _leaves(_decode(old), where, out.removed)
        if not b and out.written is not None:
            out.written.append(path)  # emptied: the empty object is a leaf now


def _changes(old: Any, new: Any, path: str, ops: Optional[List[dict]], written: Optional[List[str]],
             removed: Optional[List[str]]) -> None:
    """:meth:`Snapshot.changes` below the snapshots' depth: ``old`` decoded, ``new`` live. The
    operations are :func:`_diff`'s; with ``ops`` None, only the leaves are followed."""
    if new is MISSING:
        if old is not MISSING:
            if ops is not None:
                ops.append({"op": "remove", "path": path})
            if removed is not None:
                _leaves(old, path, removed)
        return
    if old is MISSING:
        _leaves(new, path, written)
        if ops is not None:
            ops.append({"op": "add", "path": path, "value": new})
        return
    old_kind, new_kind = _container_kind(old), _container_kind(new)
    if old_kind is dict and new_kind is dict:
        # An unchanged string (labels, annotations: most values) is passed over in one comprehension.
        get = old.get
        for key in [k for k, v in new.items() if type(v) is not str or get(k) != v]:
            value = new[key]
            was = get(key, MISSING)
            if type(value) is str and type(was) is str:  # labels, annotations: decided inline
                if value != was:
                    where = pointer(path, key)
                    if ops is not None:
                        ops.append({"op": "replace", "path": where, "value": value})
                    if written is not None:
                        written.append(where)
            elif was is MISSING:
                _check_key(key, path)
                where = pointer(path, key)
                _leaves(value, where, written)
                if ops is not None:
                    ops.append({"op": "add", "path": where, "value": value})
            elif not _unchanged(was, value):
                _changes(was, value, pointer(path, key), ops, written, removed)
        if not old.keys() <= new.keys():
            for key, value in old.items():
                if key not in new:
                    where = pointer(path, key)
                    if ops is not None:
                        ops.append({"op": "remove", "path": where})
                    if removed is not None:
                        _leaves(value, where, removed)
            if not new and written is not None:
                written.append(path)  # emptied: the empty object is a leaf now
    elif old_kind is list and new_kind is list:
        n, m = len(old), len(new)
        if m > n and ops is not None and _unchanged(old, new[:n]):
            # Appends (tolerations, env entries): "add" at the end keeps the patch small.
            for i in range(n, m):
                _leaves(new[i], f"{path}/{i}", written)
                ops.append({"op": "add", "path": f"{path}/-", "value": new[i]})
            return
        if m != n and ops is not None:
            ops.append({"op": "replace", "path": path, "value": new})
            if written is None:
                _leaves(new, path, None)  # all of it goes on the wire: all of it must be JSON
                return
            ops = None  # the leaves are still followed by index
        for i in range(min(n, m)):
            if not _unchanged(old[i], new[i]):
                _changes(old[i], new[i], f"{path}/{i}", ops, written, removed)
        for i in range(n, m):
            _leaves(new[i], f"{path}/{i}", written)
            if ops is not None:
                ops.append({"op": "add", "path": f"{path}/-", "value": new[i]})
        if removed is not None:
            for i in range(m, n):
                _leaves(old[i], f"{path}/{i}", removed)
        if n and not m and written is not None:
            written.append(path)  # emptied: the empty list is a leaf now
    else:
        if old_kind is None and new_kind is None and type(old) is type(new) and old == new:
            return  # equal scalars (NaN never is: it goes on to be refused)
        if ops is not None:
            ops.append({"op": "replace", "path": path, "value": new})
        if removed is not None and (old_kind is not None or new_kind is not None):
            # A leaf became a container or the reverse: the old leaves are gone.
            _leaves(old, path, removed)
        _leaves(new, path, written)


def _encode(obj: Any, depth: int) -> Node:
    kind = type(obj)
    if kind in _SCALARS or obj is MISSING:
        return obj
    if kind is dict or isinstance(obj, dict):  # subclasses: a cached (read-only) object put in
        if depth:
            return {key: _encode(value, depth - 1) for key, value in obj.items()}
        return orjson.dumps(obj)
    if kind is list or isinstance(obj, list):
        return orjson.dumps(obj)
    return obj


def _encode_at(obj: Any, keys: Tuple[str, ...]) -> Node:
    """``_encode(_walk(obj, keys), 0)`` in one call: a snapshot takes it for each declared path,
    on every admission."""
    for key in keys:
        if type(obj) is not dict:
            return MISSING
        obj = obj.get(key, MISSING)
    kind = type(obj)
    if kind is dict or kind is list:
        return orjson.dumps(obj)
    return _encode(obj, 0)


def _decode(node: Node) -> Any:
    kind = type(node)
    if kind is dict:
        return {key: _decode(child) for key, child in node.items()}
    if kind is bytes:
        return orjson.loads(node)
    return node


def _diff_node(node: Node, new: Any, path: str, ops: List[dict]) -> None:
    kind = type(node)
    if kind is bytes:
        if _container_kind(new) is None or orjson.dumps(new) != node:
            _diff_strict(orjson.loads(node), new, path, ops)
        return
    if kind is not dict:  # a scalar
        if type(new) is not kind or new != node:
            ops.append({"op": "replace", "path": path, "value": new})
        return
    if _container_kind(new) is not dict:
        ops.append({"op": "replace", "path": path, "value": new})
        return
    for key, child in node.items():
        if key not in new:
            ops.append({"op": "remove", "path": pointer(path, key)})
            continue
        value = new[key]
        child_kind = type(child)
        # The common case, unchanged, decided inline: no path is built, no call made.
        if child_kind is bytes:
            if (type(value) in (dict, list) or _container_kind(value)) and orjson.dumps(value) == child:
                continue
        elif child_kind is not dict and type(value) is child_kind and value == child:
            continue
        _diff_node(child, value, pointer(path, key), ops)
    if len(new) > len(node) or any(key not in node for key in new):
        for key, value in new.items():
            if key not in node:
                ops.append({"op": "add", "path": pointer(path, key), "value": value})


def make_patch(old: Any, new: Any) -> List[dict]:
    """The operations that turn ``old`` into ``new`` (an empty list when they are equal)."""
    return Snapshot(old).diff(new)


def _diff_strict(old: Any, new: Any, path: str, ops: List[dict]) -> None:
    if not _same(old, new):
        _diff(old, new, path, ops)


def _diff(old: Any, new: Any, path: str, ops: List[dict]) -> None:
    if _container_kind(old) is dict and _container_kind(new) is dict:
        for key, value in old.items():
            if key not in new:
                ops.append({"op": "remove", "path": pointer(path, key)})
                continue
            other = new[key]
            if type(value) is str and type(other) is str:  # labels, annotations: decided inline
                if value != other:
                    ops.append({"op": "replace", "path": pointer(path, key), "value": other})
            elif not _same(value, other):
                _diff(value, other, pointer(path, key), ops)
        for key, value in new.items():
            if key not in old:
                ops.append({"op": "add", "path": pointer(path, key), "value": value})
    elif _container_kind(old) is list and _container_kind(new) is list:
        n = len(old)
        if len(new) == n:
            for i in range(n):
                if not _same(old[i], new[i]):
                    _diff(old[i], new[i], f"{path}/{i}", ops)
        elif len(new) > n and _same(new[:n], old):
            # Appends (tolerations, env entries): "add" at the end keeps the patch small.
            ops.extend({"op": "add", "path": f"{path}/-", "value": v} for v in new[n:])
        else:
            ops.append({"op": "replace", "path": path, "value": new})
    else:
        ops.append({"op": "replace", "path": path, "value": new})
