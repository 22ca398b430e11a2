"""What caches hold is read-only, so identical parts of cached objects are kept once."""

import gc

import orjson

from framework.kube.frozen import FrozenDict, FrozenList, Shared, freeze
from framework.kube.store import Store

TOLERATIONS = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 300},
               {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 300}]


def replica(i: int) -> dict:
    """A pod of one ReplicaSet, decoded afresh (no string or number shared with another)."""
    return orjson.loads(orjson.dumps({
        "metadata": {"name": f"web-7d9c5-{i}", "namespace": "shop", "uid": f"uid-{i}",
                     "labels": {"app": "web", "pod-template-hash": "7d9c5"}},
        "spec": {"tolerations": TOLERATIONS, "nodeSelector": {}}}))


def test_the_pods_of_a_replicaset_share_their_labels_and_tolerations():
    shared = Shared()
    a, b = freeze(replica(1), shared), freeze(replica(2), shared)
    assert a["metadata"]["labels"] is b["metadata"]["labels"]
    assert a["spec"]["tolerations"] is b["spec"]["tolerations"]
    assert a["spec"]["nodeSelector"] is b["spec"]["nodeSelector"]
    # An object and its metadata are one of a kind: never looked up.
    assert a is not b and a["metadata"] is not b["metadata"]
    assert a["metadata"]["name"] == "web-7d9c5-1" and b["metadata"]["name"] == "web-7d9c5-2"
    assert orjson.dumps(a) == orjson.dumps(replica(1))
    assert type(a["spec"]["tolerations"]) is FrozenList and type(a["spec"]) is FrozenDict


def test_only_the_same_json_is_shared():
    shared = Shared()
    one, true, one_float = (freeze({"x": v}, shared) for v in (1, True, 1.0))
    assert one == true == one_float  # equal in Python ...
    assert len({id(one), id(true), id(one_float)}) == 3  # ... not the same JSON
    assert [orjson.dumps(p) for p in (one, true, one_float)] == [b'{"x":1}', b'{"x":true}', b'{"x":1.0}']
    ab, ba = freeze({"a": "1", "b": "2"}, shared), freeze({"b": "2", "a": "1"}, shared)
    assert ab is not ba and list(ba) == ["b", "a"]  # key order is kept as it came
    assert freeze({"a": ["1"]}, shared) is not freeze({"a": [["1"]]}, shared)
    big, same = int("1180591620717411303424"), int("1180591620717411303424")  # two objects
    assert big is not same and freeze({"n": big}, shared) is freeze({"n": same}, shared)


def test_what_a_transform_made_is_frozen_but_not_shared():
    class Compiled:
        pass

    shared = Shared()
    made = Compiled()
    a, b = freeze({"selector": made, "name": "x"}, shared), freeze({"selector": made, "name": "x"}, shared)
    assert a is not b and a["selector"] is made and type(a) is FrozenDict


def test_frozen_objects_are_returned_as_they_are():
    shared = Shared()
    a = freeze(replica(1), shared)
    assert freeze(a, shared) is a


def test_a_part_still_held_stays_shared_after_a_sweep_and_one_held_by_nobody_goes():
    shared = Shared()
    kept = freeze(replica(1), shared)
    for i in range(3000):  # several sweeps: parts of objects dropped at once
        freeze({"labels": {"n": str(i)}}, shared)
    gc.collect()
    assert len(shared) < 1024 + 8  # the dropped ones went; the table does not grow with them
    again = freeze(replica(2), shared)
    assert again["metadata"]["labels"] is kept["metadata"]["labels"]
    assert again["spec"]["tolerations"] is kept["spec"]["tolerations"]


def test_a_store_of_replicas_holds_one_copy_of_what_they_share():
    store = Store("pods")
    store.replace([replica(i) for i in range(50)])
    store.upsert(replica(50))
    tolerations = {id(p["spec"]["tolerations"]) for p in store.list()}
    labels = {id(p["metadata"]["labels"]) for p in store.list()}
    assert len(store) == 51 and len(tolerations) == 1 and len(labels) == 1
