"""namespaceLabels, priority and ties, keys the pod already has — as the API server applies them."""

from tests.e2e.conftest import TOLERATION


def virtual_only(name, priority=None, **spec):
    body = {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": name},
            "spec": {"policy": {"virtualNodeOnly": {}}, **spec}}
    if priority is not None:
        body["spec"]["priority"] = priority
    return body


def test_namespace_labels_select_all_pods_of_a_namespace(k8s):
    team = k8s.namespace(labels={"team": k8s.id})
    other = k8s.namespace()
    k8s.apply_selector({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": f"{k8s.id}-ns"},
                        "spec": {"namespaceLabels": {"matchLabels": {"team": k8s.id}}, "policy": {"fair": {}}}})
    assert TOLERATION in k8s.pod("a", team)["spec"]["tolerations"]
    assert TOLERATION not in (k8s.pod("b", other)["spec"].get("tolerations") or [])
    # A pod cannot opt itself in by wearing the namespace's label.
    assert TOLERATION not in (k8s.pod("c", other, labels={"team": k8s.id})["spec"].get("tolerations") or [])


def test_priority_then_name(k8s):
    ns = k8s.namespace()
    match = {"objectLabels": {"matchLabels": {"app": k8s.id}}}
    k8s.apply_selector(virtual_only(f"{k8s.id}-b", 5, effect={"annotations": {"winner": "b"}}, **match))
    k8s.apply_selector(virtual_only(f"{k8s.id}-a", 5, effect={"annotations": {"winner": "a"}}, **match))
    k8s.apply_selector(virtual_only(f"{k8s.id}-low", 1, effect={"annotations": {"winner": "low"}}, **match))
    assert k8s.pod("tie", ns, labels={"app": k8s.id})["metadata"]["annotations"]["winner"] == "a"
    k8s.apply_selector(virtual_only(f"{k8s.id}-top", 10, effect={"annotations": {"winner": "top"}}, **match))
    assert k8s.pod("top", ns, labels={"app": k8s.id})["metadata"]["annotations"]["winner"] == "top"


def test_keys_the_pod_has_are_kept(k8s):
    ns = k8s.namespace()
    k8s.apply_selector(virtual_only(f"{k8s.id}-keys", objectLabels={"matchLabels": {"app": k8s.id}},
                                    effect={"annotations": {"foo": "selector"}, "labels": {"foo": "selector"}}))
    pod = k8s.pod("own", ns, labels={"app": k8s.id, "foo": "mine"}, annotations={"foo": "mine"})
    assert pod["metadata"]["annotations"]["foo"] == "mine"
    assert pod["metadata"]["labels"]["foo"] == "mine"


def test_invalid_selector_is_reported_and_ignored(k8s):
    ns = k8s.namespace()
    name = f"{k8s.id}-bad"
    k8s.apply_selector(virtual_only(name, objectLabels={"matchExpressions": [{"key": "app", "operator": "In"}]}))
    seen = k8s.wait_selector_seen(name)
    valid = next(c for c in seen["status"]["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False" and "at least one value" in valid["message"]
    events = k8s.admin.get("/api/v1/namespaces/default/events").get("items") or []
    assert any(e["reason"] == "InvalidSelector" and e["involvedObject"]["name"] == name for e in events)
    assert "nodeSelector" not in k8s.pod("p", ns, labels={"app": "x"})["spec"]


def test_schema_rejects_two_policies_bad_operators_and_bad_durations(k8s):
    from tests.e2e.host import kubectl
    import yaml

    for spec in ({"policy": {"fair": {}, "virtualNodeOnly": {}}}, {"policy": {}},
                 {"policy": {"fair": {}}, "objectLabels": {"matchExpressions": [{"key": "a", "operator": "Like"}]}},
                 {"policy": {"fair": {}}, "priority": "high"},
                 # the burst engine's fields: durations, negatives, enums
                 {"policy": {"normalNodePrefer": {"burstAfter": "-30s"}}},
                 {"policy": {"normalNodePrefer": {"maxWait": "ten minutes"}}},
                 {"policy": {"fair": {}}, "maxVirtualPods": -1},
                 {"policy": {"fair": {}}, "scaleIn": "OldestFirst"},
                 {"policy": {"fair": {}}, "drainBack": {"after": "10"}},
                 {"policy": {"fair": {}}, "drainBack": {"maxPerMinute": 5}}):
        body = {"apiVersion": "eci.aliyun.com/v1beta1", "kind": "Selector", "metadata": {"name": f"{k8s.id}-x"},
                "spec": spec}
        # --validate=false: the API server's schema must refuse it, not kubectl's own check
        proc = kubectl(k8s.cp, "apply", "--validate=false", "-f", "-", input=yaml.safe_dump(body), check=False)
        assert proc.returncode != 0, spec
        assert "Invalid" in proc.stderr or "invalid" in proc.stderr, proc.stderr
