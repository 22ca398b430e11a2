"""``admission-host mutate | explain | review | plugins``, run in-process through ``framework.cli.main``."""

import base64
import io
import re
import sys
import uuid

import orjson
import pytest
import yaml

from framework.admission.review import validate
from framework.cli import as_review, main
from framework.testing import binding, namespace, node, pod, review

# A plugin installed (as a distribution with an entry point) for these tests: a watch on
# Namespaces, a pod mutator that reads it, a binding mutator, a denial, and an explanation.
CLITEST = """
from framework import Denied, Mutator, Watch, hookimpl

shutdowns = []


@hookimpl
def admission_host_watches():
    return [Watch(name="clitest-namespaces", resource="namespaces", kind="Namespace")]


@hookimpl
def admission_host_mutators(host, options):
    namespaces = host.store("clitest-namespaces")

    def pods(req):
        labels = req.object["metadata"].setdefault("labels", {})
        if labels.get("deny"):
            raise Denied("pods labelled deny are refused")
        ns = namespaces.get_by_name(req.namespace)
        if ns is not None:
            labels["team"] = ns["metadata"]["labels"].get("team", "none")
        labels["dry-run"] = str(req.dry_run).lower()
        req.warn("clitest was here")

    def bindings(req):
        req.object["metadata"].setdefault("annotations", {})["bound-to"] = req.object["target"]["name"]

    return [Mutator(name="clitest-pods", mutate=pods),
            Mutator(name="clitest-bindings", mutate=bindings, resources="pods/binding")]


@hookimpl
def admission_host_explain(host, obj):
    return [f"would label {obj['metadata']['name']}"]


@hookimpl
def admission_host_shutdown(host):
    shutdowns.append(host)
"""


@pytest.fixture(autouse=True)
def _logging(restore_logging):
    pass


@pytest.fixture
def clitest(install_plugin):
    install_plugin("clitest", "clitest_plugin", CLITEST)
    import clitest_plugin
    return clitest_plugin


def write(tmp_path, name, *docs):
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs))
    return str(path)


def _text(tmp, name, text):
    path = tmp / name
    path.write_text(text)
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def patch_of(answer):
    return orjson.loads(base64.b64decode(answer["response"]["patch"]))


def test_mutate_a_bare_pod(tmp_path, capsys):
    path = write(tmp_path, "pod.yaml", pod("web", labels={"example.com/deletion-cost": "-100"}))
    code, out, err = run(capsys, "mutate", path, "--plugins", "pod_deletion_cost")
    assert code == 0, err
    answer = orjson.loads(out)
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["response"]["allowed"] is True
    assert answer["response"]["uid"]
    assert patch_of(answer) == [{"op": "add", "path": "/metadata/annotations",
                                 "value": {"controller.kubernetes.io/pod-deletion-cost": "-100"}}]


def test_mutate_output_object_applies_the_patch(tmp_path, capsys):
    bare = pod("web", labels={"example.com/deletion-cost": "7"})
    del bare["metadata"]["namespace"]
    path = write(tmp_path, "pod.yaml", bare)
    code, out, err = run(capsys, "mutate", path, "--plugins", "pod_deletion_cost", "-o", "object")
    assert code == 0, err
    obj = orjson.loads(out)
    assert obj["metadata"]["annotations"] == {"controller.kubernetes.io/pod-deletion-cost": "7"}
    assert obj["metadata"]["namespace"] == "default"


def test_mutate_output_patch_is_one_operation_a_line(tmp_path, capsys):
    path = write(tmp_path, "pod.yaml", pod("web", labels={"example.com/deletion-cost": "7"}))
    code, out, err = run(capsys, "mutate", path, "--plugins", "pod_deletion_cost", "-o", "patch")
    assert code == 0, err
    assert out == ('[{"op":"add","path":"/metadata/annotations",'
                   '"value":{"controller.kubernetes.io/pod-deletion-cost":"7"}}]\n')
    assert orjson.loads(out)[0]["op"] == "add"
    plain = write(tmp_path, "plain.yaml", pod("plain"))
    code, out, err = run(capsys, "mutate", plain, "--plugins", "pod_deletion_cost", "-o", "patch")
    assert code == 0 and out == "[]\n" and "no change" in err


def test_mutate_reports_warnings_on_stderr_with_output_object(tmp_path, capsys):
    path = write(tmp_path, "pod.yaml", pod("web", labels={"example.com/deletion-cost": "lots"}))
    code, out, err = run(capsys, "mutate", path, "--plugins", "pod_deletion_cost", "-o", "object")
    assert code == 0
    assert "warning: label example.com/deletion-cost='lots' is not an integer" in err
    assert "annotations" not in orjson.loads(out)["metadata"]


def test_mutate_a_v1beta1_review_answers_in_v1beta1(tmp_path, capsys):
    sent = review(pod("web", labels={"example.com/deletion-cost": "1"}), api_version="admission.k8s.io/v1beta1",
                  uid="beta-uid")
    code, out, err = run(capsys, "mutate", write(tmp_path, "review.json", sent), "--plugins", "pod_deletion_cost")
    assert code == 0, err
    answer = orjson.loads(out)
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1"
    assert answer["response"]["uid"] == "beta-uid"
    assert patch_of(answer)[0]["value"] == {"controller.kubernetes.io/pod-deletion-cost": "1"}


def test_mutate_a_bare_binding(tmp_path, capsys, clitest):
    path = write(tmp_path, "binding.yaml", binding("web", "vk-1"))
    code, out, err = run(capsys, "mutate", path, "--plugins", "clitest", "-o", "object")
    assert code == 0, err
    obj = orjson.loads(out)
    assert obj["kind"] == "Binding"
    assert obj["metadata"]["annotations"] == {"bound-to": "vk-1"}
    assert "labels" not in obj["metadata"], "the pod mutator is not routed pods/binding"


def test_mutate_with_objects_from_multi_document_files(tmp_path, capsys, clitest):
    objects = write(tmp_path, "objects.yaml", namespace("a", {"team": "red"}),
                    {"apiVersion": "v1", "kind": "List", "items": [namespace("b", {"team": "blue"})]},
                    None, pod("unrelated"))
    more = write(tmp_path, "more.yaml", namespace("c", {"team": "green"}))
    for ns, team in (("a", "red"), ("b", "blue"), ("c", "green")):
        path = write(tmp_path, f"pod-{ns}.yaml", pod("p", namespace=ns))
        code, out, err = run(capsys, "mutate", path, "--plugins", "clitest", "--objects", objects, more,
                             "-o", "object")
        assert code == 0, err
        assert orjson.loads(out)["metadata"]["labels"]["team"] == team
        assert "warning: clitest was here" in err


def test_mutate_dry_run(tmp_path, capsys, clitest):
    path = write(tmp_path, "pod.yaml", pod("p"))
    code, out, _ = run(capsys, "mutate", path, "--plugins", "clitest", "--dry-run", "-o", "object")
    assert orjson.loads(out)["metadata"]["labels"]["dry-run"] == "true"
    code, out, _ = run(capsys, "mutate", path, "--plugins", "clitest", "-o", "object")
    assert orjson.loads(out)["metadata"]["labels"]["dry-run"] == "false"


def test_mutate_reads_stdin(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(orjson.dumps(pod("p", labels={"example.com/deletion-cost": "3"}))
                                                  .decode()))
    code, out, err = run(capsys, "mutate", "-", "--plugins", "pod_deletion_cost", "-o", "object")
    assert code == 0, err
    assert orjson.loads(out)["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"] == "3"


def test_a_denial_exits_1_and_still_shuts_the_host_down(tmp_path, capsys, clitest):
    path = write(tmp_path, "pod.yaml", pod("p", labels={"deny": "yes"}))
    code, out, err = run(capsys, "mutate", path, "--plugins", "clitest", "-o", "object")
    assert code == 1
    assert "denied: clitest: pods labelled deny are refused" in err
    assert out == ""
    assert len(clitest.shutdowns) == 1
    code, out, err = run(capsys, "mutate", path, "--plugins", "clitest")
    assert code == 0 and orjson.loads(out)["response"]["allowed"] is False


def test_mutate_with_a_config_file(tmp_path, capsys):
    config = write(tmp_path, "config.yaml", {"enabledPlugins": ["pod_deletion_cost"],
                                             "plugins": {"pod_deletion_cost": {"label": "cost"}}})
    path = write(tmp_path, "pod.yaml", pod("web", labels={"cost": "5"}))
    code, out, err = run(capsys, "mutate", path, "--config", config, "-o", "object")
    assert code == 0, err
    assert orjson.loads(out)["metadata"]["annotations"] == {"controller.kubernetes.io/pod-deletion-cost": "5"}


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: [str(tmp / "missing.yaml")], "missing.yaml"),
    (lambda tmp: [write(tmp, "two.yaml", pod("a"), pod("b"))], "expected exactly one object, found 2"),
    (lambda tmp: [write(tmp, "none.yaml")], "expected exactly one object, found 0"),
    (lambda tmp: [write(tmp, "list.yaml", [1, 2])], "expected objects, found a list"),
    (lambda tmp: [write(tmp, "nokind.yaml", {"metadata": {"name": "x"}})], "the object has no kind"),
    (lambda tmp: [str(_text(tmp, "bad.yaml", "a: [1\n"))], "while parsing"),
    (lambda tmp: [write(tmp, "review.yaml", {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                             "request": {"operation": "CREATE",
                                                         "resource": {"group": "", "resource": "pods"}}})],
     "request.uid is missing"),
    (lambda tmp: [write(tmp, "pod.yaml", pod("a")), "--plugins", "pod_deletion_cost,nope"],
     "unknown plugin(s): nope"),
    (lambda tmp: [write(tmp, "pod.yaml", pod("a")), "--config", write(tmp, "c.yaml", {"prot": 1})],
     "unknown key(s) prot"),
    (lambda tmp: [write(tmp, "pod.yaml", pod("a")), "--plugins", "pod_deletion_cost", "--config",
                  write(tmp, "c.yaml", {"plugins": {"pod_deletion_cost": {"lable": "x"}}})],
     "plugin 'pod_deletion_cost': unknown option(s) lable; known: label"),
])
def test_mutate_errors_exit_2_with_a_message(tmp_path, capsys, make_args, message):
    args = make_args(tmp_path)
    if "--plugins" not in args and "--config" not in args:
        args += ["--plugins", "pod_deletion_cost"]
    code, out, err = run(capsys, "mutate", *args)
    assert code == 2
    assert err.startswith("admission-host: error: ")
    assert message in err
    assert "Traceback" not in err and out == ""


def test_plugins_lists_what_is_installed(capsys, clitest):
    code, out, err = run(capsys, "plugins", "--plugins", "pod_deletion_cost,clitest")
    assert code == 0, err
    data = orjson.loads(out)
    assert [p["name"] for p in data["plugins"]] == ["clitest", "pod_deletion_cost"]
    clitest_entry = data["plugins"][0]
    assert clitest_entry["distribution"] == "test-plugin-clitest" and clitest_entry["version"] == "1.2.3"
    assert "admission_host_explain" in clitest_entry["hooks"]
    assert data["mutators"] == ["clitest-bindings", "clitest-pods", "pod-deletion-cost"]
    assert data["watches"] == ["clitest-namespaces"] and data["controllers"] == []


@pytest.mark.parametrize("source, message", [
    ("import definitely_not_a_module_anywhere\n",
     "plugin 'broken' (broken_plugin) failed to load: ModuleNotFoundError"),
    ("from framework import hookimpl\n\n@hookimpl\ndef admission_host_mutator():\n    return []\n",
     "plugin 'broken' implements an unknown hook"),
    # An entry point naming a module without the hookimpls (its package's __init__, say): it loads.
    ("WORD = 'hello'\n",
     "plugin 'broken' (broken_plugin) implements no hook: its entry point should name the module with the "
     "@hookimpl functions"),
])
def test_plugins_check_fails_for_a_plugin_that_cannot_work(install_plugin, capsys, source, message):
    install_plugin("broken", "broken_plugin", source)
    code, out, err = run(capsys, "plugins", "--check", "--plugins", "pod_deletion_cost,broken")
    assert code == 2 and err.startswith(f"admission-host: error: {message}"), err
    assert "Traceback" not in err


def test_explain_prints_each_plugins_reasons_and_the_result(tmp_path, capsys, clitest):
    path = write(tmp_path, "pod.yaml", pod("web", namespace="a"))
    objects = write(tmp_path, "ns.yaml", namespace("a", {"team": "red"}))
    code, out, err = run(capsys, "explain", path, "--plugins", "clitest", "--objects", objects)
    assert code == 0, err
    assert "== clitest\n  would label web\n" in out
    assert "== result (as a dry-run creation)" in out
    assert '"team":"red"' in out and '"dry-run":"true"' in out
    assert "warning: clitest was here" in out


@pytest.mark.parametrize("kind, api_version, resource, group", [
    ("Pod", "v1", "pods", ""), ("Ingress", "networking.k8s.io/v1", "ingresses", "networking.k8s.io"),
    ("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", "networking.k8s.io"),
    ("Deployment", "apps/v1", "deployments", "apps"),
])
def test_bare_objects_become_the_create_the_api_server_would_send(kind, api_version, resource, group):
    sent = as_review({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x", "namespace": "ns"}})
    request = sent["request"]
    assert request["resource"] == {"group": group, "version": "v1", "resource": resource}
    assert request["operation"] == "CREATE" and request["namespace"] == "ns" and "subResource" not in request


def test_a_bare_binding_is_a_pods_binding_create():
    request = as_review(binding("web", "n1", namespace="ns"))["request"]
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["subResource"] == "binding" and request["name"] == "web" and request["namespace"] == "ns"


# -- what --objects files cannot fill -------------------------------------------------------------------------
def warned(err):
    """The warnings logged on stderr, message only."""
    return [line.split(" admission_host: ", 1)[1] for line in err.splitlines() if " WARNING admission_host: " in line]


def deployment(name):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "a"}}


def test_objects_of_a_kind_no_plugin_watches_are_reported(tmp_path, capsys, clitest):
    objects = write(tmp_path, "objects.yaml", namespace("a", {"team": "red"}), deployment("d"), deployment("e"))
    code, out, err = run(capsys, "mutate", write(tmp_path, "pod.yaml", pod("p", namespace="a")), "--plugins", "clitest",
                         "--objects", objects, "-o", "object")
    assert code == 0, err
    assert orjson.loads(out)["metadata"]["labels"]["team"] == "red"
    assert warned(err) == [f"{objects}: 2 Deployment (apps/v1) objects not loaded: no plugin watches that kind; "
                           "watched: Namespace (v1)"]


@pytest.mark.parametrize("api_version, kind", [
    ("v1", "Namepsace"), ("v1", "namespace"), ("v1", "Namespaces"), ("example.com/v1", "Namespace")])
def test_a_kind_spelt_like_a_watched_one_gets_a_hint(tmp_path, capsys, clitest, api_version, kind):
    objects = write(tmp_path, "objects.yaml", {"apiVersion": api_version, "kind": kind, "metadata": {"name": "a"}})
    code, _, err = run(capsys, "explain", write(tmp_path, "pod.yaml", pod("p", namespace="a")), "--plugins", "clitest",
                       "--objects", objects)
    assert code == 0, err
    assert (f"{objects}: 1 {kind} ({api_version}) object not loaded: no plugin watches that kind "
            "(did you mean Namespace (v1)?); watched: Namespace (v1)") in warned(err)


def test_a_watched_kind_the_files_lack_is_reported(tmp_path, capsys, clitest):
    path = write(tmp_path, "pod.yaml", pod("p", namespace="a"))
    code, _, err = run(capsys, "mutate", path, "--plugins", "clitest", "--objects",
                       write(tmp_path, "nodes.yaml", node("n1")))
    assert code == 0, err
    assert ("plugin clitest watches Namespace (v1) but the --objects files hold none; its cache clitest-namespaces "
            "is empty") in warned(err)
    # Files holding the kind (even when no object of it is selected), or no files at all: nothing to say.
    for objects in (["--objects", write(tmp_path, "ns.yaml", namespace("b"))], []):
        code, _, err = run(capsys, "mutate", path, "--plugins", "clitest", *objects)
        assert code == 0 and warned(err) == [], err


def test_an_object_with_no_kind_in_the_files_is_an_error(tmp_path, capsys, clitest):
    objects = write(tmp_path, "objects.yaml", namespace("a"), {"metadata": {"name": "x"}})
    code, out, err = run(capsys, "mutate", write(tmp_path, "pod.yaml", pod("p")), "--plugins", "clitest",
                         "--objects", objects)
    assert (code, out) == (2, "")
    assert err == f"admission-host: error: {objects}: object 2 has no kind; is it a Kubernetes object?\n"


# -- admission-host review --------------------------------------------------------------------------------------
def reviewed(capsys, *argv):
    """The request ``admission-host review ARGV`` prints, checked as the host checks what it receives."""
    code, out, err = run(capsys, "review", *argv)
    assert code == 0, err
    sent = orjson.loads(out)
    assert validate(sent)[0] == "admission.k8s.io/v1"
    return sent["request"]


CORE_POD = {"group": "", "version": "v1", "kind": "Pod"}
PODS = {"group": "", "version": "v1", "resource": "pods"}


def test_review_of_a_pod_is_its_creation_as_the_api_server_sends_it(tmp_path, capsys):
    sent = pod("web", namespace="shop", labels={"app": "web"})
    request = reviewed(capsys, write(tmp_path, "pod.yaml", sent))
    uid = request.pop("uid")
    assert str(uuid.UUID(uid)) == uid
    sent["metadata"]["creationTimestamp"] = None  # not created yet
    assert request == {
        "kind": CORE_POD, "resource": PODS, "requestKind": CORE_POD, "requestResource": PODS,
        "operation": "CREATE", "namespace": "shop", "name": "web",
        "userInfo": {"username": "admission-host-review", "groups": ["system:authenticated"]},
        "object": sent, "oldObject": None, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}
    assert reviewed(capsys, write(tmp_path, "pod.yaml", sent))["uid"] != uid


def test_review_of_a_pod_with_a_generate_name_has_no_name_yet(tmp_path, capsys):
    sent = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"}, "spec": {"containers": []}}
    request = reviewed(capsys, write(tmp_path, "pod.yaml", sent))
    assert "name" not in request and request["namespace"] == "default"
    assert request["object"]["metadata"] == {"generateName": "web-", "namespace": "default", "creationTimestamp": None}


def test_review_of_an_update_and_a_deletion(tmp_path, capsys):
    new = write(tmp_path, "new.yaml", pod("web", labels={"v": "2"}))
    old = write(tmp_path, "old.yaml", pod("web", labels={"v": "1"}))
    request = reviewed(capsys, new, "--operation", "UPDATE", "--old", old)
    assert request["operation"] == "UPDATE" and request["name"] == "web"
    assert request["options"] == {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}
    assert request["object"] == pod("web", labels={"v": "2"})  # it exists: no creation time to leave out
    assert request["oldObject"] == pod("web", labels={"v": "1"})
    assert reviewed(capsys, new, "--operation", "update")["oldObject"] == pod("web", labels={"v": "2"})
    request = reviewed(capsys, new, "--operation", "DELETE")
    assert request["object"] is None and request["oldObject"] == pod("web", labels={"v": "2"})
    assert request["options"] == {"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions"}


def test_review_binding_is_the_pods_binding_create_of_the_scheduler(tmp_path, capsys):
    sent = pod("web", namespace="shop")
    sent["metadata"]["uid"] = "3f1c"
    request = reviewed(capsys, write(tmp_path, "pod.yaml", sent), "--binding", "vk-1")
    request.pop("uid")
    kind = {"group": "", "version": "v1", "kind": "Binding"}
    assert request == {
        "kind": kind, "resource": PODS, "subResource": "binding",
        "requestKind": kind, "requestResource": PODS, "requestSubResource": "binding",
        "operation": "CREATE", "namespace": "shop", "name": "web",
        "userInfo": {"username": "system:kube-scheduler", "groups": ["system:authenticated"]},
        "object": {"kind": "Binding", "apiVersion": "v1",
                   "metadata": {"name": "web", "namespace": "shop", "uid": "3f1c", "creationTimestamp": None},
                   "target": {"kind": "Node", "name": "vk-1"}},
        "oldObject": None, "dryRun": False, "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}
    # A pod of a ReplicaSet: bound under the name the API server gave it.
    generated = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "web-"}, "spec": {"containers": []}}
    request = reviewed(capsys, write(tmp_path, "generated.yaml", generated), "--binding", "vk-1")
    assert re.fullmatch(r"web-[a-z0-9]{5}", request["name"]) and request["object"]["metadata"]["name"] == request["name"]


def test_a_printed_binding_review_goes_through_the_pipeline(tmp_path, capsys, monkeypatch, clitest):
    code, out, err = run(capsys, "review", write(tmp_path, "pod.yaml", pod("web")), "--binding", "vk-1")
    assert code == 0, err
    monkeypatch.setattr(sys, "stdin", io.StringIO(out))
    code, out, err = run(capsys, "mutate", "-", "--plugins", "clitest", "-o", "object")
    assert code == 0, err
    assert orjson.loads(out)["metadata"]["annotations"] == {"bound-to": "vk-1"}


@pytest.mark.parametrize("obj, resource, namespace_", [
    ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
     {"group": "apps", "version": "v1", "resource": "deployments"}, "default"),
    ({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}, {"group": "", "version": "v1", "resource": "nodes"},
     None),
    ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
     {"group": "", "version": "v1", "resource": "namespaces"}, "shop"),  # a namespace is filed under itself
    # A custom resource's scope is not known offline: the file's namespace, or none.
    ({"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": "s"}},
     {"group": "eci.aliyun.com", "version": "v1", "resource": "selectors"}, None),
])
def test_review_of_other_kinds(tmp_path, capsys, obj, resource, namespace_):
    request = reviewed(capsys, write(tmp_path, "obj.yaml", obj))
    assert request["resource"] == request["requestResource"] == resource
    assert request.get("namespace") == namespace_ and request["object"]["metadata"].get("namespace") == (
        namespace_ if obj["kind"] not in ("Namespace", "Node", "Selector") else None)


def test_review_user(tmp_path, capsys):
    path = write(tmp_path, "pod.yaml", pod("web"))
    assert reviewed(capsys, path, "--user", "alice")["userInfo"] == {"username": "alice",
                                                                     "groups": ["system:authenticated"]}
    controller = "system:serviceaccount:kube-system:replicaset-controller"
    assert reviewed(capsys, path, "--user", controller)["userInfo"] == {
        "username": controller,
        "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]}


def _binary(tmp, name, data):
    path = tmp / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: [str(tmp / "missing.yaml")], "No such file or directory: "),
    (lambda tmp: [str(_text(tmp, "bad.yaml", "a: [1\n"))],
     "bad.yaml: not YAML or JSON: while parsing a flow sequence, expected ',' or ']', but got '<stream end>' "
     "(line 2, column 1)"),
    (lambda tmp: [str(_binary(tmp, "image.png", b"\x89PNG\r\n\x1a\n"))], "image.png: not a text file"),
    (lambda tmp: [write(tmp, "list.yaml", [1, 2])], "list.yaml: expected objects, found a list"),
    (lambda tmp: [write(tmp, "two.yaml", pod("a"), pod("b"))], "expected exactly one object, found 2"),
    (lambda tmp: [write(tmp, "nokind.yaml", {"metadata": {"name": "x"}})], "nokind.yaml: the object has no kind"),
    (lambda tmp: [write(tmp, "review.yaml", review(pod("a")))], "review.yaml is already an AdmissionReview"),
    (lambda tmp: [write(tmp, "pod.yaml", pod("a")), "--old", write(tmp, "old.yaml", pod("a"))],
     "--old is the object before an UPDATE: give --operation UPDATE"),
    (lambda tmp: [write(tmp, "pod.yaml", pod("a")), "--operation", "UPDATE", "--old", write(tmp, "old.yaml", node("a"))],
     "--old is a Node (v1), the object a Pod (v1)"),
    (lambda tmp: [write(tmp, "pod.yaml", pod("a")), "--operation", "UPDATE", "--old", str(tmp / "gone.yaml")],
     "gone.yaml"),
    (lambda tmp: [write(tmp, "node.yaml", node("a")), "--binding", "vk-1"], "--binding binds a Pod; "),
    (lambda tmp: [write(tmp, "pod.yaml", pod("a")), "--binding", "vk-1", "--operation", "DELETE"],
     "a binding is only ever created (pods/binding CREATE): drop --operation DELETE"),
    (lambda tmp: [write(tmp, "pod.yaml", {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "a-"}}),
                  "--operation", "DELETE"], "pod.yaml: DELETE needs the object's metadata.name"),
])
def test_review_errors_exit_2_with_one_line(tmp_path, capsys, make_args, message):
    code, out, err = run(capsys, "review", *make_args(tmp_path))
    assert (code, out) == (2, "")
    assert err.startswith("admission-host: error: ") and err.count("\n") == 1, err
    assert message in err
