"""One JSONPatch (RFC 6902) from the object as received to the object as the mutators left it.

``jsonpatch.make_patch`` walks the whole object in Python (~0.5 ms for a 6.5 KB pod), and a deep
copy to diff against costs as much again. Instead, before the mutators run, a :class:`Snapshot`
keeps the object's subtrees *encoded* (orjson, a few µs): mutators then edit the object itself,
and afterwards only the subtrees whose encoding changed are decoded and diffed. Comparing
encodings also keeps ``1``, ``1.0`` and ``true`` apart, which Python's ``==`` does not.
The result is checked against ``jsonpatch.apply_patch`` in the tests.
"""

from __future__ import annotations

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
    """dict or list for those and their subclasses (read-only cached objects), else None."""
    kind = type(value)
    if kind is dict or kind is list:
        return kind
    return dict if isinstance(value, dict) else list if isinstance(value, list) else None


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
            self.paths = [(keys, _encode(_walk(obj, keys), 0)) for keys in paths]

    @classmethod
    def covers(cls, obj: Any, paths: Iterable[Tuple[str, ...]]) -> bool:
        """Whether every declared path's parent exists as an object (else snapshot it all)."""
        return type(obj) is dict and all(type(_walk(obj, keys[:-1])) is dict for keys in paths)

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
