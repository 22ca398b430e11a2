"""The pipeline: order, routing, one composed patch, failure policies, and never a crash."""

import dataclasses
import datetime
import enum
import logging
import uuid

import orjson
import pytest

from framework import FAIL, IGNORE, Denied, Mutator
from framework.admission.patch import Snapshot
from framework.admission.pipeline import Pipeline
from framework.metrics import Metrics
from framework.testing import Result, binding, pod, review


def send(pipeline: Pipeline, sent: dict) -> Result:
    return Result(sent, orjson.loads(pipeline.handle(orjson.dumps(sent))))


def labeller(key, value, **kw):
    def mutate(req):
        req.object["metadata"].setdefault("labels", {})[key] = value
    return Mutator(name=kw.pop("name", f"set-{key}"), mutate=mutate, **kw)


def recorder(name, seen, **kw):
    """Records the labels it sees, then adds itself to the ``trail`` label."""
    def mutate(req):
        labels = req.object["metadata"].setdefault("labels", {})
        seen.append((name, dict(labels)))
        labels["trail"] = labels.get("trail", "") + name
    return Mutator(name=name, mutate=mutate, **kw)


def test_order_then_name_not_registration_order():
    seen = []
    mutators = [recorder("c", seen, order=5), recorder("b", seen), recorder("a", seen, order=5),
                recorder("z", seen, order=-1)]
    pipeline = Pipeline(mutators)
    assert [m.name for m in pipeline.mutators] == ["z", "b", "a", "c"]
    result = send(pipeline, review(pod("p")))
    assert [name for name, _ in seen] == ["z", "b", "a", "c"]
    # Each saw what the previous ones left.
    assert [labels.get("trail") for _, labels in seen] == [None, "z", "zb", "zba"]
    assert result.object["metadata"]["labels"] == {"trail": "zbac"}


def test_one_patch_that_gives_the_final_object():
    def tolerate(req):
        req.object["spec"].setdefault("tolerations", []).append({"key": "k", "operator": "Exists"})

    def rename(req):
        req.object["metadata"]["labels"]["app"] = "renamed"

    pipeline = Pipeline([labeller("app", "web", order=1), Mutator("tolerate", tolerate, order=2),
                         Mutator("rename", rename, order=3)])
    sent = review(pod("p"))
    result = send(pipeline, sent)
    assert result.allowed and result.response["patchType"] == "JSONPatch"
    assert result.object["metadata"]["labels"] == {"app": "renamed"}
    assert result.object["spec"]["tolerations"] == [{"key": "k", "operator": "Exists"}]
    # One patch from the original: the intermediate "web" never appears.
    assert "web" not in orjson.dumps(result.patch).decode()
    assert sent["request"]["object"] == pod("p"), "the request itself is not modified"


def test_no_patch_when_nothing_changed():
    def look(req):
        req.object["metadata"].get("labels")

    result = send(Pipeline([Mutator("look", look)]), review(pod("p")))
    assert result.allowed
    assert "patch" not in result.response and "patchType" not in result.response


def test_a_change_undone_by_a_later_mutator_is_no_patch():
    def unset(req):
        del req.object["metadata"]["labels"]["x"]

    sent = review(pod("p", labels={"app": "web"}))
    result = send(Pipeline([labeller("x", "1", order=1), Mutator("unset", unset, order=2)]), sent)
    assert "patch" not in result.response


@pytest.mark.parametrize("sent, expected", [
    (review(pod("p")), {"pods", "any-resource", "any-group", "create-only", "all-ops", "everything"}),
    (review(pod("p"), operation="UPDATE", old_object=pod("p")), {"pods-update", "any-resource", "any-group",
                                                                  "all-ops", "everything"}),
    (review(binding("p", "n1")), {"binding", "everything", "any-group-binding"}),
    (review({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"}},
            group="apps", resource="deployments"), {"deployments", "any-group", "any-resource-apps"}),
    (review({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}},
            resource="pods", sub_resource="status", operation="UPDATE"), {"everything", "status"}),
])
def test_routing(sent, expected):
    ran = []

    def mk(name, **kw):
        return Mutator(name=name, mutate=lambda req, name=name: ran.append(name), **kw)

    pipeline = Pipeline([
        mk("pods"), mk("pods-update", operations="UPDATE"), mk("binding", resources="pods/binding"),
        mk("deployments", group="apps", resources="deployments"),
        mk("any-resource", resources="*", operations=("CREATE", "UPDATE")),
        mk("any-resource-apps", resources="*", group="apps"),
        mk("any-group", group="*", resources=("pods", "deployments"), operations=("CREATE", "UPDATE")),
        mk("any-group-binding", group="*", resources="pods/binding"),
        mk("create-only", resources="pods", operations="CREATE"),
        mk("all-ops", resources="pods", operations="*"),
        mk("everything", resources="*/*", operations="*"),
        mk("status", resources="*/status", operations="UPDATE"),
    ])
    send(pipeline, sent)
    assert set(ran) == expected


def test_star_does_not_reach_subresources():
    """As in a webhook rule: ``*`` is every resource, ``*/*`` adds their subresources."""
    star = Mutator("star", lambda req: None, resources="*")
    assert star.wants("", "pods", "CREATE")
    assert not star.wants("", "pods/binding", "CREATE")
    everything = Mutator("everything", lambda req: None, resources="*/*")
    assert everything.wants("", "pods", "CREATE") and everything.wants("", "pods/binding", "CREATE")
    # As the API server matches rules: "pods/*" is pods and every subresource of pods.
    sub = Mutator("sub", lambda req: None, resources="pods/*")
    assert sub.wants("", "pods/binding", "CREATE") and sub.wants("", "pods", "CREATE")
    assert not sub.wants("", "nodes/status", "CREATE")
    status = Mutator("status", lambda req: None, resources="*/status")
    assert status.wants("", "nodes/status", "CREATE") and not status.wants("", "nodes", "CREATE")


def explode(name="boom", message="kaput", **kw):
    def mutate(req):
        req.object["metadata"].setdefault("labels", {})["half-done"] = name
        req.object["spec"]["containers"].append({"name": "junk"})
        req.warn(f"{name} warned before failing")
        req.audit(f"{name}-audit", "x")
        raise RuntimeError(message)
    return Mutator(name=name, mutate=mutate, **kw)


def test_ignore_rolls_back_a_failed_mutator_in_the_middle_of_a_chain(caplog):
    def after(req):
        req.audit("after", "saw " + ",".join(sorted(req.object["metadata"].get("labels", {}))))

    pipeline = Pipeline([labeller("first", "1", order=1), explode(order=2, failure_policy=IGNORE),
                         labeller("third", "3", order=3), Mutator("after", after, order=4)])
    with caplog.at_level(logging.ERROR):
        result = send(pipeline, review(pod("p")))
    assert result.allowed
    assert result.object["metadata"]["labels"] == {"first": "1", "third": "3"}
    assert result.object["spec"]["containers"] == pod("p")["spec"]["containers"]
    assert result.audit_annotations == {"after": "saw first,third"}
    assert len(result.warnings) == 1
    assert "'boom'" in result.warnings[0] and "kaput" in result.warnings[0] and "skipped" in result.warnings[0]
    assert "kaput" in caplog.text


def test_ignore_rolls_back_the_first_mutator():
    pipeline = Pipeline([explode(order=1), labeller("second", "2", order=2)])
    result = send(pipeline, review(pod("p")))
    assert result.object["metadata"]["labels"] == {"second": "2"}
    assert len(result.object["spec"]["containers"]) == 1


def test_ignore_with_every_mutator_failing_sends_no_patch():
    result = send(Pipeline([explode("a"), explode("b")]), review(pod("p")))
    assert result.allowed and "patch" not in result.response
    assert len(result.warnings) == 2


def test_fail_denies_naming_the_plugin_and_the_error():
    boom = explode(failure_policy=FAIL)
    pipeline = Pipeline([labeller("first", "1", order=-1), dataclasses.replace(boom, plugin="myplugin")])
    result = send(pipeline, review(pod("p")))
    assert not result.allowed
    assert "patch" not in result.response
    message = result.status["message"]
    assert "myplugin" in message and "boom" in message and "kaput" in message
    assert result.status["code"] == 500


def leave_a_datetime(name="late-stamp", **kw):
    def mutate(req):
        req.warn(f"{name} warned before failing")
        req.audit(f"{name}-audit", "x")
        req.object["metadata"]["annotations"] = {"stamped": datetime.datetime(2024, 5, 1)}
    return Mutator(name=name, mutate=mutate, **kw)


@pytest.mark.parametrize("failing", [explode, leave_a_datetime])
@pytest.mark.parametrize("policy", [IGNORE, FAIL])
def test_a_mutator_that_failed_leaves_no_warning_or_audit_annotation_of_its_own(failing, policy):
    """Under either policy; what the mutators before it added stays, and the host says what happened."""
    def note(req):
        req.warn("noted")
        req.audit("note", "1")

    result = send(Pipeline([Mutator("note", note, order=1), failing(order=2, failure_policy=policy)]),
                  review(pod("p")))
    assert result.audit_annotations == {"note": "1"}
    assert result.warnings[0] == "noted" and not any("warned before failing" in w for w in result.warnings)
    if policy == FAIL:
        assert not result.allowed and result.warnings == ["noted"]
        assert result.status["code"] == 500 and "failed: " in result.status["message"]
    else:
        assert result.allowed and len(result.warnings) == 2 and "failed and was skipped" in result.warnings[1]


def test_a_denying_mutator_keeps_its_warnings_since_they_may_say_why():
    def deny(req):
        req.warn("pods of team blue go to namespace blue")
        raise Denied("wrong namespace")

    result = send(Pipeline([Mutator("deny", deny)]), review(pod("p")))
    assert not result.allowed and result.warnings == ["pods of team blue go to namespace blue"]


def test_the_info_line_of_a_patched_admission_names_audit_annotation_keys_never_their_values(caplog):
    def annotate(req):
        req.object["metadata"]["labels"] = {"tier": "front"}
        req.audit("selector", "payments-eci")
        req.audit("token", "s3cr3t-t0ken")

    with caplog.at_level(logging.INFO, logger="admission_host.admission"):
        result = send(Pipeline([Mutator("annotate", annotate)]), review(pod("web", namespace="shop")))
    assert result.audit_annotations == {"selector": "payments-eci", "token": "s3cr3t-t0ken"}
    assert [r.getMessage() for r in caplog.records] == [
        "patched CREATE pods shop/web by annotate (audit selector,token): add /metadata/labels"]
    assert "s3cr3t" not in caplog.text and "payments-eci" not in caplog.text and "front" not in caplog.text


def test_denied_exception_rejects_with_its_code():
    def deny(req):
        raise Denied("pods must have an owner", code=422)

    ran = []
    pipeline = Pipeline([dataclasses.replace(Mutator("deny", deny, order=1), plugin="policy"),
                         Mutator("later", lambda req: ran.append(1), order=2)])
    result = send(pipeline, review(pod("p")))
    assert not result.allowed
    assert result.status == {"code": 422, "message": "policy: pods must have an owner"}
    assert ran == [], "nothing runs after a denial"


def test_denied_default_code_is_403():
    def deny(req):
        raise Denied("no")

    result = send(Pipeline([Mutator("deny", deny, failure_policy=IGNORE)]), review(pod("p")))
    assert result.status == {"code": 403, "message": "deny: no"}


class Colour(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    SMALL = 1


class Tier(str, enum.Enum):
    FRONT = "front"


@dataclasses.dataclass
class Owner:
    team: str = "red"


@pytest.mark.parametrize("bad_value,where", [
    (object(), "/metadata/annotations/x (a object)"), ({1, 2}, "/metadata/annotations/x (a set)"),
    (b"bytes", "/metadata/annotations/x (a bytes)"), ({1: "a"}, "/metadata/annotations/x/1 (a int key)"),
    ([1, 2 ** 70], "/metadata/annotations/x/1 (an integer too large"),
    # What orjson would quietly turn into JSON (a string, a number, an object, null) is refused as well.
    (datetime.datetime(2024, 5, 1, 12, 0), "/metadata/annotations/x (a datetime)"),
    (datetime.date(2024, 5, 1), "/metadata/annotations/x (a date)"),
    (datetime.time(12, 0), "/metadata/annotations/x (a time)"),
    (uuid.UUID(int=7), "/metadata/annotations/x (a UUID)"),
    (Colour.RED, "/metadata/annotations/x (a Colour, an Enum)"),
    (["a", Size.SMALL], "/metadata/annotations/x/1 (a Size, an Enum)"),
    (Tier.FRONT, "/metadata/annotations/x (a Tier, an Enum)"),
    ({"owner": Owner()}, "/metadata/annotations/x/owner (a Owner)"),
    (float("nan"), "/metadata/annotations/x (the float nan, not a JSON number)"),
    ([1.5, float("inf")], "/metadata/annotations/x/1 (the float inf, not a JSON number)"),
    ({"y": -float("inf")}, "/metadata/annotations/x/y (the float -inf, not a JSON number)")])
@pytest.mark.parametrize("paths", [None, ("metadata.annotations", "metadata.labels")])
def test_a_value_that_is_not_json_fails_that_mutator_alone(bad_value, where, paths, caplog):
    """Others' changes stay, even a Fail mutator's; the culprit and the path are named."""
    def store_junk(req):
        req.object["metadata"]["annotations"] = {"x": bad_value}

    metrics = Metrics()
    chain = [labeller("before", "1", order=1, failure_policy=FAIL, paths=paths),
             dataclasses.replace(Mutator("junk", store_junk, order=2, paths=paths), plugin="sloppy"),
             labeller("after", "2", order=3, paths=paths)]
    with caplog.at_level(logging.ERROR):
        result = send(Pipeline(chain, metrics), review(pod("p"), uid="u-9"))
    assert result.allowed and result.response["uid"] == "u-9"
    assert result.object["metadata"]["labels"] == {"before": "1", "after": "2"}
    assert "annotations" not in result.object["metadata"]
    assert len(result.warnings) == 1 and "'sloppy'" in result.warnings[0] and where in result.warnings[0]
    assert "sloppy" in caplog.text and where in caplog.text
    assert metrics.registry.get_sample_value(
        "admission_host_mutator_calls_total", {"plugin": "sloppy", "mutator": "junk", "outcome": "error"}) == 1


@pytest.mark.parametrize("where,bad_value", [
    ("/spec/priority (a set)", {1, 2}), ("/spec/priority (the float nan", float("nan")),
    ("/spec/priority (a Size, an Enum)", Size.SMALL), ("/spec/startedAt (a datetime)", datetime.datetime(2024, 5, 1)),
    ("/metadata/uid (a UUID)", uuid.UUID(int=7)), ("/spec/hostname (a Tier, an Enum)", Tier.FRONT)])
@pytest.mark.parametrize("paths", [None, ("spec.priority", "spec.startedAt", "metadata.uid", "spec.hostname")])
def test_a_value_that_is_not_json_near_the_top_of_the_object_fails_that_mutator_too(where, bad_value, paths):
    """The top two levels are kept as they are rather than encoded: they are looked at just the same."""
    _, first, second = where.split(" ")[0].split("/")

    def store_junk(req):
        req.object[first][second] = bad_value

    result = send(Pipeline([Mutator("junk", store_junk, paths=paths)]), review(pod("p")))
    assert result.allowed and "patch" not in result.response
    assert len(result.warnings) == 1 and f"left a value that is not JSON at {where}" in result.warnings[0]


@pytest.mark.parametrize("key,where", [("bad-neighbour/set", "/metadata/annotations/bad-neighbour~1set (a set)"),
                                       ("a~b", "/metadata/annotations/a~0b (a set)"),
                                       ("a/b~c", "/metadata/annotations/a~1b~0c (a set)")])
@pytest.mark.parametrize("deep", [False, True])
def test_the_pointer_to_a_value_that_is_not_json_escapes_slash_and_tilde(key, where, deep):
    """As RFC 6901 writes it: ``~1`` for ``/``, ``~0`` for ``~``; here and inside a part already encoded."""
    def store_junk(req):
        req.object["metadata"]["annotations"] = {key: {"v": {1}} if deep else {1}}

    result = send(Pipeline([Mutator("junk", store_junk)]), review(pod("p")))
    expected = where.replace(" (a set)", "/v (a set)") if deep else where
    assert len(result.warnings) == 1 and f"at {expected}" in result.warnings[0]


def test_a_not_json_value_under_failure_policy_fail_denies_naming_the_path():
    def store_junk(req):
        req.object["metadata"]["annotations"] = {"x": {1, 2}}

    result = send(Pipeline([Mutator("junk", store_junk, failure_policy=FAIL)]), review(pod("p")))
    assert not result.allowed and "/metadata/annotations/x (a set)" in result.status["message"]


def test_a_mutator_that_replaces_the_object_is_fine():
    def replace(req):
        req.object = {**req.object, "metadata": {**req.object["metadata"], "labels": {"new": "1"}}}

    result = send(Pipeline([Mutator("replace", replace)]), review(pod("p")))
    assert result.object["metadata"]["labels"] == {"new": "1"}


def test_dry_run_is_visible_to_mutators():
    seen = []
    pipeline = Pipeline([Mutator("look", lambda req: seen.append(req.dry_run))])
    send(pipeline, review(pod("p"), dry_run=True))
    send(pipeline, review(pod("p")))
    assert seen == [True, False]


def test_request_without_object_runs_nothing():
    ran = []
    pipeline = Pipeline([Mutator("m", lambda req: ran.append(req.operation), operations="*")])
    sent = review(pod("p"), operation="DELETE", old_object=pod("p"))
    send(pipeline, sent)
    assert ran == ["DELETE"]
    sent["request"]["object"] = None
    result = send(pipeline, sent)
    assert result.allowed and ran == ["DELETE"]


def test_duplicate_mutator_names_are_rejected():
    with pytest.raises(ValueError, match="duplicate mutator name.*same"):
        Pipeline([Mutator("same", lambda r: None), Mutator("same", lambda r: None, order=3)])


def test_mutator_declaration_is_checked():
    with pytest.raises(ValueError, match="failure_policy"):
        Mutator("m", lambda r: None, failure_policy="Sometimes")
    with pytest.raises(TypeError, match="callable"):
        Mutator("m", "not a function")


def test_metrics_count_outcomes():
    metrics = Metrics()
    pipeline = Pipeline([labeller("a", "1"), explode("x", resources="pods/binding")], metrics)
    send(pipeline, review(pod("p")))
    send(pipeline, review(binding("p", "n")))

    def sample(name, **labels):
        return metrics.registry.get_sample_value(name, labels)

    assert sample("admission_host_admissions_total", resource="pods", operation="CREATE", outcome="patched") == 1
    assert sample("admission_host_admissions_total", resource="pods/binding", operation="CREATE",
                  outcome="unchanged") == 1
    assert sample("admission_host_mutator_calls_total", plugin="", mutator="x", outcome="error") == 1
    assert sample("admission_host_mutator_calls_total", plugin="", mutator="set-a", outcome="ok") == 1


def of(plugin, mutator):
    return dataclasses.replace(mutator, plugin=plugin)


def overlaps(pipeline):
    """The samples of admission_host_mutator_overlaps_total: {(first, second, path): count}."""
    return {(s.labels["first"], s.labels["second"], s.labels["path"]): s.value
            for s in pipeline.metrics.mutator_overlaps.collect()[0].samples if s.name.endswith("_total")}


def told(caplog):
    return [r.getMessage() for r in caplog.records if "the later one wins" in r.getMessage()]


@pytest.mark.parametrize("paths", [None, ("metadata.labels",)])
def test_a_value_one_plugin_set_and_a_later_one_changed_is_told_once_and_counted_by_its_pointer(paths, caplog):
    pipeline = Pipeline([of("one", labeller("team", "a", name="a", order=1, paths=paths)),
                         of("two", labeller("team", "b", name="b", order=2, paths=paths))])
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert send(pipeline, review(pod("p"))).object["metadata"]["labels"] == {"team": "b"}
    assert told(caplog) == ["plugin 'two' changed /metadata/labels/team, which plugin 'one' had set in the same "
                            "request; the later one wins (logged once for these plugins and this path)"]
    assert overlaps(pipeline) == {("one", "two", "/metadata/labels/team"): 3}


@pytest.mark.parametrize("paths", [None, ("metadata.labels",)])
def test_plugins_that_add_different_labels_do_not_overlap(paths, caplog):
    pipeline = Pipeline([of("one", labeller("c", "1", order=1, paths=paths)),
                         of("two", labeller("d", "2", order=2, paths=paths))])
    with caplog.at_level(logging.WARNING):
        for labels in (None, {"app": "web"}):  # the labels made by the first plugin, or already there
            result = send(pipeline, review(pod("p", labels=labels)))
            assert result.object["metadata"]["labels"] == {**(labels or {}), "c": "1", "d": "2"}
    assert told(caplog) == [] and overlaps(pipeline) == {}


def test_an_image_rewrite_and_a_resources_default_do_not_overlap(caplog):
    def mirror(req):
        for container in req.object["spec"]["containers"]:
            container["image"] = "mirror.example.com/" + container["image"]

    def resources(req):
        for container in req.object["spec"]["containers"]:
            container.setdefault("resources", {"requests": {"cpu": "100m"}})

    pipeline = Pipeline([of("images", Mutator("mirror", mirror, order=1)),
                         of("defaults", Mutator("resources", resources, order=2))])
    spec = {"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "redis"}]}
    with caplog.at_level(logging.WARNING):
        for _ in range(9):
            result = send(pipeline, review(pod("p", spec=spec)))
    assert result.object["spec"]["containers"][1] == {"name": "b", "image": "mirror.example.com/redis",
                                                      "resources": {"requests": {"cpu": "100m"}}}
    assert told(caplog) == [] and overlaps(pipeline) == {}


def test_a_value_a_later_plugin_removes_or_writes_over_is_named_down_to_the_list_entry(caplog):
    def tolerate(req):
        req.object["spec"].setdefault("tolerations", []).append({"key": "virtual", "effect": "NoSchedule"})

    def soften(req):
        for toleration in req.object["spec"].get("tolerations", []):
            toleration["effect"] = "PreferNoSchedule"

    def strip(req):
        req.object["metadata"].pop("labels", None)

    pipeline = Pipeline([of("one", Mutator("tolerate", tolerate, order=1)), of("one", labeller("x", "1", order=1)),
                         of("two", Mutator("soften", soften, order=2)), of("two", Mutator("strip", strip, order=3))])
    with caplog.at_level(logging.WARNING):
        result = send(pipeline, review(pod("p", labels={"app": "web"})))
    assert "labels" not in result.object["metadata"]
    assert overlaps(pipeline) == {("one", "two", "/spec/tolerations/0/effect"): 1,
                                  ("one", "two", "/metadata/labels/x"): 1}
    assert sorted(told(caplog)) == [
        "plugin 'two' changed /spec/tolerations/0/effect, which plugin 'one' had set in the same request; "
        "the later one wins (logged once for these plugins and this path)",
        "plugin 'two' removed /metadata/labels/x, which plugin 'one' had set in the same request; "
        "the later one wins (logged once for these plugins and this path)"]


def test_the_overlap_metric_names_a_bounded_number_of_pointers(monkeypatch):
    """Past the limit, a new pointer is counted under its first two levels: the series stay few."""
    monkeypatch.setattr("framework.admission.pipeline.OVERLAP_PATHS", 2)
    pipeline = Pipeline([of("one", labeller(k, "1", name=f"one-{k}", order=1)) for k in "abc"]
                        + [of("two", labeller(k, "2", name=f"two-{k}", order=2)) for k in "abc"])
    for _ in range(2):
        send(pipeline, review(pod("p")))
    assert overlaps(pipeline) == {("one", "two", "/metadata/labels/a"): 2, ("one", "two", "/metadata/labels/b"): 2,
                                  ("one", "two", "/metadata/labels/*"): 2}


def test_a_plugin_is_not_told_of_its_own_changes(caplog):
    mutators = [of("same", labeller("a", v, name=f"same-{v}", order=i)) for i, v in enumerate("12")]
    mutators.append(of("other", labeller("a", "3", name="other", order=5)))
    with caplog.at_level(logging.WARNING):
        send(Pipeline(mutators), review(pod("p")))
    [line] = told(caplog)
    assert line.startswith("plugin 'other' changed /metadata/labels/a, which plugin 'same' had set")


def sneaky(name="sneaky", order=1):
    """Declares metadata.labels, and also changes spec.priority."""
    def mutate(req):
        req.object["metadata"].setdefault("labels", {})["declared"] = "yes"
        req.object["spec"]["priority"] = 7
    return dataclasses.replace(Mutator(name, mutate, order=order, paths=("metadata.labels",)), plugin="p")


@pytest.mark.parametrize("others", [
    [],  # only declared paths are snapshotted
    [Mutator("undeclared", lambda req: req.object["metadata"].setdefault("annotations", {}).update(a="1"),
             order=2)],  # a mutator without paths: the whole object is snapshotted
])
def test_a_change_outside_the_declared_paths_is_dropped_and_said_whatever_else_is_installed(others, caplog):
    metrics = Metrics()
    pipeline = Pipeline([sneaky()] + others, metrics)
    with caplog.at_level(logging.WARNING):
        result = send(pipeline, review(pod("p")))
        for _ in range(40):  # dropped every time; with declared paths only, said on one in 16
            assert "priority" not in send(pipeline, review(pod("p"))).object["spec"]
    assert result.object["metadata"]["labels"] == {"declared": "yes"}
    assert "priority" not in result.object["spec"]
    assert [w for w in result.warnings if "declared paths; the change is dropped" in w]
    assert "declared paths on" in caplog.text and "sneaky" in caplog.text
    said = sum(s.value for s in metrics.undeclared_changes.collect()[0].samples if s.name.endswith("_total"))
    assert said == (41 if others else 3)
    if others:
        assert result.object["metadata"]["annotations"] == {"a": "1"}
        assert "spec.priority" in result.warnings[0] and "'sneaky'" in result.warnings[0]


def test_mutators_that_stay_in_their_paths_cost_no_warning():
    result = send(Pipeline([labeller("a", "1", paths=("metadata.labels",))]), review(pod("p")))
    assert result.warnings == [] and result.object["metadata"]["labels"] == {"a": "1"}


def test_an_error_of_the_host_itself_admits_the_request_unchanged_with_a_warning(monkeypatch, caplog):
    """The host's own bugs never block a pod: not a mutator failing, so no failure policy applies."""
    def broken_diff(self, new):
        raise RuntimeError("a bug in the host")

    def audit(req):
        req.audit("seen", "yes")
        req.warn("a mutator's warning")
        req.object["metadata"]["labels"]["audited"] = "yes"  # two mutators changed it: one diff composes

    monkeypatch.setattr(Snapshot, "diff", broken_diff)
    metrics = Metrics()
    pipeline = Pipeline([labeller("app", "web", order=1, failure_policy=FAIL), Mutator("audit", audit, order=2)],
                        metrics)
    with caplog.at_level(logging.ERROR):
        result = send(pipeline, review(pod("p"), uid="u-7"))
    assert result.allowed and result.response["uid"] == "u-7"
    assert "patch" not in result.response and result.object == pod("p")
    assert result.warnings == ["admission-host: internal error, request admitted unchanged"]
    assert result.audit_annotations == {}
    assert "a bug in the host" in caplog.text
    assert metrics.registry.get_sample_value(
        "admission_host_admissions_total", {"resource": "pods", "operation": "CREATE", "outcome": "error"}) == 1
