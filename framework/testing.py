"""A kit for testing plugins without a cluster.

    from framework.testing import PluginHarness, pod

    def test_my_plugin():
        harness = PluginHarness(my_plugin_module, options={"key": "value"}, objects=[...])
        result = harness.create(pod("web", labels={"app": "web"}))
        assert result.allowed
        assert result.object["metadata"]["annotations"]["x"] == "y"
"""

from __future__ import annotations

import base64
import copy
import uuid
from typing import Any, Dict, Iterable, List, Optional

import jsonpatch
import orjson

from framework.config import Config
from framework.plugins import get_plugin_manager, installed_plugins


def pod(name: str = "pod", namespace: str = "default", labels: Optional[dict] = None,
        annotations: Optional[dict] = None, spec: Optional[dict] = None) -> dict:
    """A minimal Pod."""
    meta: Dict[str, Any] = {"name": name, "namespace": namespace}
    if labels is not None:
        meta["labels"] = dict(labels)
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": spec or {"containers": [{"name": "main", "image": "nginx"}]}}


def namespace(name: str, labels: Optional[dict] = None) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})}}


def node(name: str, labels: Optional[dict] = None, taints: Optional[list] = None) -> dict:
    spec = {"taints": list(taints)} if taints else {}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels or {})},
            "spec": spec}


def binding(pod_name: str, node_name: str, namespace: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod_name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}


def review(obj: dict, *, operation: str = "CREATE", resource: Optional[str] = None, sub_resource: str = "",
           group: str = "", version: str = "v1", namespace: Optional[str] = None, name: Optional[str] = None,
           dry_run: bool = False, api_version: str = "admission.k8s.io/v1", old_object: Optional[dict] = None,
           uid: Optional[str] = None) -> dict:
    """An AdmissionReview request as the API server sends it. ``resource`` defaults from the kind."""
    meta = obj.get("metadata") or {}
    kind = obj.get("kind", "")
    if resource is None:
        resource, sub_resource = ("pods", "binding") if kind == "Binding" else (kind.lower() + "s", sub_resource)
    request = {
        "uid": uid or str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "operation": operation,
        "namespace": meta.get("namespace", "") if namespace is None else namespace,
        "name": meta.get("name", "") if name is None else name,
        "userInfo": {"username": "tester"},
        "object": obj,
        "oldObject": old_object,
        "dryRun": dry_run,
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}


class Result:
    """An AdmissionReview response, decoded, with the patched object."""

    def __init__(self, sent: dict, answer: dict):
        self.review = answer
        self.response: dict = answer["response"]
        self.allowed: bool = self.response["allowed"]
        self.warnings: List[str] = self.response.get("warnings") or []
        self.audit_annotations: dict = self.response.get("auditAnnotations") or {}
        self.status: dict = self.response.get("status") or {}
        self.patch: List[dict] = (orjson.loads(base64.b64decode(self.response["patch"]))
                                  if "patch" in self.response else [])
        original = sent["request"]["object"]
        self.object = jsonpatch.apply_patch(original, self.patch) if self.patch else copy.deepcopy(original)

    def __repr__(self) -> str:
        return f"<Result allowed={self.allowed} patch={self.patch} warnings={self.warnings}>"


class PluginHarness:
    """A host with the given plugins (modules or objects), static caches and no API server.

    Only the plugins passed are loaded, never the other installed entry points. A plugin is a
    module or object, or a ``(name, plugin)`` pair; by default it is named by its entry point
    (so ``options`` are keyed as in the config file). ``kube`` may be a fake or a real
    :class:`framework.KubeClient` for plugins that call the API server.
    """

    def __init__(self, *plugins, options: Optional[Dict[str, dict]] = None, objects: Iterable[dict] = (),
                 config: Optional[Config] = None, kube=None):
        from framework.host import Host

        config = config or Config()
        pm = get_plugin_manager(enabled=[])
        for plugin in plugins:
            name, plugin = plugin if isinstance(plugin, tuple) else (_name_of(plugin), plugin)
            pm.register(plugin, name=name)
        pm.check_pending()
        if options:
            config.plugin_options = {**config.plugin_options, **options}
        self.host = Host(config, kube, pluginmanager=pm)
        self.host.load_objects(list(objects))
        self.host.start(watches=False, controllers=False)
        self.host.pipeline.strict = True  # host errors raise; declared mutator paths are checked

    def store(self, name: str):
        return self.host.store(name)

    def send(self, sent: dict) -> Result:
        """Send a whole AdmissionReview through the pipeline (bytes in, bytes out, like the server)."""
        return Result(sent, orjson.loads(self.host.pipeline.handle(orjson.dumps(sent))))

    def create(self, obj: dict, **kw) -> Result:
        """Admit the creation of ``obj`` (a Binding becomes a CREATE of pods/binding)."""
        return self.send(review(obj, **kw))

    def close(self) -> None:
        self.host.stop()

    def __enter__(self) -> "PluginHarness":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def harness_fixture():
    """A pytest fixture body: ``make(*plugins, **kw)`` builds harnesses, all closed after the test.

    Installed with the package as the pytest plugin ``admission_host_testing``, it is the fixture
    ``plugin_harness`` in any test suite, with no conftest to write."""
    made: List[PluginHarness] = []

    def make(*plugins, **kw) -> PluginHarness:
        made.append(PluginHarness(*plugins, **kw))
        return made[-1]

    yield make
    for harness in made:
        harness.close()


def _name_of(plugin) -> str:
    module = getattr(plugin, "__name__", None) or type(plugin).__name__
    for name, ep in installed_plugins().items():
        if ep.value == module:
            return name
    return module.rsplit(".", 1)[-1]
