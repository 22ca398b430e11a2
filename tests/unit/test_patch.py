"""framework.admission.patch.make_patch: applying the patch to the original gives the final object."""

import copy

import jsonpatch
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from framework.admission.patch import Snapshot, clone, make_patch, pointer

# Keys include the two characters JSON Pointer escapes, and strings that look like indexes. Not
# the key "-" alone: the jsonpatch library used to check the result refuses "replace /-" even on
# an object (the API server's json-patch does not; no Kubernetes field is called "-").
keys = st.text(alphabet="ab/~0-", max_size=4).filter(lambda k: k != "-")
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 53), max_value=2 ** 53)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5))
documents = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                         | st.dictionaries(keys, children, max_size=4), max_leaves=25)
objects = st.dictionaries(keys, documents, max_size=5)


def strict_equal(a, b) -> bool:
    """JSON equality: ``1``, ``1.0`` and ``True`` differ (Python's ``==`` says they are equal)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b))
    return a == b


@st.composite
def edited(draw, doc):
    """``doc`` with random edits: values replaced (often by one of another JSON type that Python
    calls equal), keys removed and added, lists appended to, truncated or reordered."""
    if isinstance(doc, dict):
        out = {}
        for key, value in doc.items():
            action = draw(st.sampled_from(["keep", "keep", "edit", "remove"]))
            if action == "keep":
                out[key] = value
            elif action == "edit":
                out[key] = draw(edited(value))
        for key in draw(st.lists(keys, max_size=2)):
            out[key] = draw(documents)
        return out
    if isinstance(doc, list):
        action = draw(st.sampled_from(["keep", "edit", "append", "truncate", "reverse", "insert"]))
        if action == "edit":
            return [draw(edited(v)) for v in doc]
        if action == "append":
            return doc + draw(st.lists(documents, min_size=1, max_size=3))
        if action == "truncate":
            return doc[:draw(st.integers(0, len(doc)))]
        if action == "reverse":
            return doc[::-1]
        if action == "insert":
            return [draw(documents)] + doc
        return list(doc)
    if isinstance(doc, bool) or isinstance(doc, (int, float)):
        twins = [bool(doc), int(doc), float(doc)] if abs(doc) < 2 ** 53 else [doc]
        return draw(st.sampled_from(twins + [draw(scalars)]))
    return draw(st.sampled_from([doc, draw(documents)]))


@st.composite
def old_and_new(draw):
    old = draw(objects)
    return old, draw(edited(old))


def check(old, new):
    before = copy.deepcopy(old)
    patch = make_patch(old, new)
    orjson.dumps(patch)  # it goes on the wire
    result = jsonpatch.apply_patch(old, patch)
    assert strict_equal(result, new), (old, new, patch)
    assert strict_equal(old, before), "make_patch must not touch its input"
    return patch


@settings(max_examples=300, deadline=None)
@given(old_and_new())
def test_applying_the_patch_gives_the_edited_object(pair):
    check(*pair)


@settings(max_examples=150, deadline=None)
@given(objects, objects)
def test_applying_the_patch_gives_an_unrelated_object(old, new):
    check(old, new)


@settings(max_examples=100, deadline=None)
@given(objects)
def test_equal_objects_give_an_empty_patch(doc):
    assert make_patch(doc, clone(doc)) == []
    assert make_patch(doc, doc) == []


def test_key_order_alone_is_no_change():
    assert make_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"d": 3, "c": 2}, "a": 1}) == []


def test_numbers_and_booleans_of_another_type_are_changes():
    for old, new in [({"a": 1}, {"a": True}), ({"a": 1}, {"a": 1.0}), ({"a": 0}, {"a": False}),
                     ({"a": True}, {"a": 1.0}), ({"a": [1, 0]}, {"a": [True, False]}),
                     ({"x": {"y": {"z": 1}}}, {"x": {"y": {"z": True}}}),
                     ({"a": [1]}, {"a": [True, 2]}), ({"a": [{"b": 1}]}, {"a": [{"b": 1.0}, 3]})]:
        patch = check(old, new)
        assert patch, (old, new)


def test_keys_with_slash_and_tilde_are_escaped():
    patch = make_patch({"metadata": {}}, {"metadata": {"annotations": {"example.com/a~b": "1"}}})
    assert patch == [{"op": "add", "path": "/metadata/annotations", "value": {"example.com/a~b": "1"}}]
    patch = make_patch({"a": {"x/y": 1, "m~n": 1}}, {"a": {"x/y": 2, "m~n": 2}})
    assert sorted(op["path"] for op in patch) == ["/a/m~0n", "/a/x~1y"]


def test_appends_are_adds_at_the_end():
    old = {"spec": {"tolerations": [{"key": "a"}]}}
    new = {"spec": {"tolerations": [{"key": "a"}, {"key": "b"}, {"key": "c"}]}}
    assert make_patch(old, new) == [{"op": "add", "path": "/spec/tolerations/-", "value": {"key": "b"}},
                                    {"op": "add", "path": "/spec/tolerations/-", "value": {"key": "c"}}]


def test_the_patch_covers_only_what_changed():
    pod = {"metadata": {"name": "p", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": f"c{i}", "image": "nginx", "env": [{"name": "A", "value": "1"}]}
                                   for i in range(20)]}}
    new = clone(pod)
    new["metadata"]["labels"]["tier"] = "front"
    new["spec"]["containers"][7]["image"] = "nginx:2"
    assert make_patch(pod, new) == [
        {"op": "add", "path": "/metadata/labels/tier", "value": "front"},
        {"op": "replace", "path": "/spec/containers/7/image", "value": "nginx:2"},
    ]


def test_removed_keys_are_removed():
    assert make_patch({"a": 1, "b/c": 2}, {"a": 1}) == [{"op": "remove", "path": "/b~1c"}]


def leaves(doc, path="", within=()):
    """{JSON pointer: (kinds of the containers on the way, type, value)} of every leaf; an empty
    object or list is a leaf. The kinds tell ``/a/0`` in an object from ``/a/0`` in a list."""
    if isinstance(doc, (dict, list)) and doc:
        items = doc.items() if isinstance(doc, dict) else enumerate(doc)
        within += (type(doc),)
        return {k: v for key, value in items for k, v in leaves(value, pointer(path, key), within).items()}
    return {path: (within, type(doc), None if isinstance(doc, (dict, list)) else doc)}


def kinds_of(doc, path="", within=()):
    """{JSON pointer: (kinds of the containers on the way, type)} of every value in ``doc``."""
    found = {path: (within, type(doc))}
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        found.update(kinds_of(value, pointer(path, key), within + (type(doc),)))
    return found


@settings(max_examples=300, deadline=None)
@given(old_and_new(), st.integers(0, 3))
def test_changes_give_the_patch_and_every_leaf_set_and_removed(pair, depth):
    """From two snapshots: the patch as make_patch gives it, and leaf by leaf (list entries by
    index) what the overlap check and the JSON check rely on."""
    old, new = pair
    before, after = leaves(old), leaves(new)
    later = Snapshot(new, depth=depth)
    changes = Snapshot(old, depth=depth).changes(later, new, leaves=True)
    assert strict_equal(jsonpatch.apply_patch(old, changes.ops), new), (old, new, changes.ops)
    assert (changes.ops == []) == (make_patch(old, new) == [])
    assert sorted(changes.parts) == sorted(Snapshot(old, depth=depth).changed(later))
    assert sorted(changes.written) == sorted(p for p, leaf in after.items() if before.get(p) != leaf)
    # An empty object or list that gained entries lost nothing: it is still there.
    kinds = kinds_of(new)
    grown = {p for p, (within, kind, _) in before.items() if kind in (dict, list) and kinds.get(p) == (within, kind)}
    assert set(changes.removed) - set(changes.written) == {p for p in before if p not in after} - grown


@settings(max_examples=150, deadline=None)
@given(old_and_new())
def test_changes_of_declared_paths_give_the_patch(pair):
    old, new = pair
    paths = [(key,) for key in {**old, **new}]
    changes = Snapshot(old, paths=paths).changes(Snapshot(new, paths=paths), new)
    assert strict_equal(jsonpatch.apply_patch(old, changes.ops), new), (old, new, changes.ops)
    assert changes.written is None and changes.removed is None  # leaves only when asked


def test_changes_side_by_side_are_apart():
    old = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "nginx"}]}}
    new = clone(old)
    new["metadata"]["labels"]["c"] = "1"
    new["spec"]["containers"][0]["image"] = "mirror/nginx"
    new["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    changes = Snapshot(old).changes(Snapshot(new), new, leaves=True)
    assert changes.parts == ["metadata.labels", "spec.containers"]
    assert changes.written == ["/metadata/labels/c", "/spec/containers/0/image",
                               "/spec/containers/0/resources/requests/cpu"]
    assert changes.removed == []
