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
import dataclasses
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

import jsonpatch
import orjson

from framework.admission.patch import clone
from framework.admission.review import build, encode, validate
from framework.config import Config, load_mapping
from framework.kube.client import JSON_PATCH, ApiError
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


def review(obj: dict, **kw) -> dict:
    """An AdmissionReview request as the API server sends it (see :func:`framework.admission.review.build`:
    ``operation``, ``resource``, ``sub_resource``, ``group``, ``version``, ``namespace``, ``name``,
    ``dry_run``, ``api_version``, ``old_object``, ``uid``). ``resource`` defaults from the kind."""
    return build(obj, **kw)


class Result:
    """An AdmissionReview response, decoded, with the patched object: what the API server gets
    (the patch as decoded from the answer's base64 JSON, not the values the mutators left)."""

    def __init__(self, sent: dict, answer: dict):
        self.review = answer
        self.response: dict = answer["response"]
        self.allowed: bool = self.response["allowed"]
        self.warnings: List[str] = self.response.get("warnings") or []
        self.audit_annotations: dict = self.response.get("auditAnnotations") or {}
        self.status: dict = self.response.get("status") or {}
        patch = self.response.get("patch")
        self.patch: List[dict] = orjson.loads(base64.b64decode(patch)) if patch else []
        original = sent["request"]["object"]
        self.object = jsonpatch.apply_patch(original, self.patch) if self.patch else copy.deepcopy(original)

    def __repr__(self) -> str:
        return f"<Result allowed={self.allowed} patch={self.patch} warnings={self.warnings}>"


class FakeKube:
    """A stand-in for :class:`framework.KubeClient` (``host.kube``) in tests: it answers from
    objects kept by path and records every call.

    ``FakeKube({"/api/v1/namespaces/default/pods/web": pod})``. ``calls`` lists ``(method, path,
    body)``; ``writes("PATCH")`` those of one method. ``get`` of a collection path lists the
    objects under it. ``post`` stores (``generateName`` gets a suffix), ``patch`` applies a merge
    patch or a JSON patch (``content_type=JSON_PATCH``) to the stored object, ``put`` replaces,
    ``delete`` removes; a missing object is a 404 :class:`framework.ApiError`, as from a server.
    ``fail(method, error, path=None, times=1)`` makes the next calls fail with ``error``.
    """

    def __init__(self, objects: Optional[Dict[str, dict]] = None):
        self.objects: Dict[str, dict] = {path: copy.deepcopy(obj) for path, obj in (objects or {}).items()}
        self.calls: List[tuple] = []
        self._failures: List[list] = []

    def fail(self, method: str, error: ApiError, path: Optional[str] = None, times: int = 1) -> None:
        self._failures.append([method.upper(), path, error, times])

    def writes(self, method: str = "PATCH") -> List[tuple]:
        return [c for c in self.calls if c[0] == method]

    def _call(self, method: str, path: str, body: Any = None) -> None:
        self.calls.append((method, path, copy.deepcopy(body)))
        for failure in self._failures:
            if failure[0] == method and failure[1] in (None, path) and failure[3] > 0:
                failure[3] -= 1
                raise failure[2]

    def _stored(self, method: str, path: str) -> dict:
        if path not in self.objects:
            raise ApiError(404, f"{method} {path}: not found", {"reason": "NotFound", "code": 404})
        return self.objects[path]

    def get(self, path: str, timeout: float = 30.0, **query) -> Any:
        self._call("GET", path)
        if path in self.objects:
            return copy.deepcopy(self.objects[path])
        items = [copy.deepcopy(o) for p, o in sorted(self.objects.items()) if p.rpartition("/")[0] == path]
        if items:
            return {"kind": "List", "metadata": {}, "items": items}
        return self._stored("GET", path)

    def post(self, path: str, body: Any, timeout: float = 30.0, **query) -> Any:
        self._call("POST", path, body)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        key = f"{path}/{meta.get('name')}"
        if key in self.objects:
            raise ApiError(409, f"POST {path}: {meta.get('name')} already exists", {"reason": "AlreadyExists"})
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def patch(self, path: str, body: Any, content_type: Optional[str] = None, timeout: float = 30.0, **query) -> Any:
        self._call("PATCH", path, body)
        current = self._stored("PATCH", path)
        if content_type == JSON_PATCH:
            try:
                patched = jsonpatch.apply_patch(current, body)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                raise ApiError(422, f"PATCH {path}: {exc}", {"reason": "Invalid"}) from None
        else:
            patched = _merge(copy.deepcopy(current), body)
        self.objects[path] = patched
        return copy.deepcopy(patched)

    def put(self, path: str, body: Any, timeout: float = 30.0, **query) -> Any:
        self._call("PUT", path, body)
        self._stored("PUT", path)
        self.objects[path] = copy.deepcopy(body)
        return copy.deepcopy(body)

    def delete(self, path: str, timeout: float = 30.0, **query) -> Any:
        self._call("DELETE", path)
        return self.objects.pop(path, None) or self._stored("DELETE", path)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge(target.get(key), value)
    return target


class PluginHarness:
    """A host with the given plugins (modules or objects), static caches and no API server.

    Only the plugins passed are loaded, never the other installed entry points. A plugin is a
    module or object, or a ``(name, plugin)`` pair; by default it is named by its entry point
    (so ``options`` are keyed as in the config file). ``config`` is the config file's content as
    YAML gives it (``{"plugins": {"my_plugin": {...}}, "admissionDeadlineSeconds": 2}``), checked
    as the file is, or a :class:`framework.config.Config`; ``options`` are added to its
    ``plugins``; ``enabledPlugins`` is not used (the plugins passed are the ones loaded).
    ``kube`` may be a :class:`FakeKube` or a real :class:`framework.KubeClient` for plugins that
    call the API server.

    Strict: an error of the host raises, declared paths are checked against a full diff, and each
    change is sent through the pipeline once more (as the API server's reinvocation would, marked
    ``dryRun`` so side effects are not repeated): a second patch that is not empty fails the test,
    since mutators must be idempotent. ``idempotent=False`` skips that last check.
    """

    def __init__(self, *plugins, options: Optional[Dict[str, dict]] = None, objects: Iterable[dict] = (),
                 config: Union[Config, Mapping[str, Any], None] = None, kube=None, idempotent: bool = True):
        from framework.host import Host

        # A copy either way: the caller's config is not changed by the options added to it.
        config = dataclasses.replace(config) if isinstance(config, Config) else load_mapping(config or {})
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
        self.idempotent = idempotent

    def store(self, name: str):
        return self.host.store(name)

    def send(self, sent: dict) -> Result:
        """Send a whole AdmissionReview through the pipeline, checked as the server checks it."""
        result = self._admit(sent)
        request = sent.get("request") or {}
        if self.idempotent and result.allowed and result.patch and request.get("operation") in ("CREATE", "UPDATE"):
            again = {**sent, "request": {**request, "object": result.object, "dryRun": True,
                                         "uid": str(uuid.uuid4())}}
            second = self._admit(again)
            if second.patch:
                raise AssertionError(f"mutators are not idempotent: run again on their own result (as the API "
                                     f"server may), they changed it again: {second.patch}")
        return result

    def _admit(self, sent: dict) -> Result:
        pipeline = self.host.pipeline
        api_version, raw = validate(clone(sent))  # a copy: mutators edit the object they are given
        outcome = pipeline.admit(pipeline.request(raw))
        # Bytes out, decoded again, as the API server reads them.
        return Result(sent, orjson.loads(encode(api_version, raw["uid"], outcome)))

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
