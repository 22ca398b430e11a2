"""AdmissionReview ``admission.k8s.io/v1`` and ``v1beta1``: parsing, validation, responses."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any, Dict, List, Optional

import orjson

GROUP = "admission.k8s.io"
VERSIONS = ("admission.k8s.io/v1", "admission.k8s.io/v1beta1")


class ReviewError(Exception):
    """The webhook call itself is broken (answered with an HTTP 4xx, not an AdmissionResponse)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


class AdmissionRequest:
    """What a mutator sees. ``object`` is the working copy to edit in place."""

    __slots__ = ("raw", "uid", "kind", "resource", "sub_resource", "operation", "namespace",
                 "name", "dry_run", "user_info", "object", "old_object", "options",
                 "warnings", "audit_annotations", "deadline", "_due")

    def __init__(self, raw: Dict[str, Any], deadline: Optional[float] = None):
        self.raw = raw
        self.uid: str = raw["uid"]
        self.kind: dict = raw.get("kind") or {}
        self.resource: dict = raw.get("resource") or {}
        self.sub_resource: str = raw.get("subResource") or ""
        self.operation: str = raw.get("operation") or ""
        self.namespace: str = raw.get("namespace") or ""
        self.name: str = raw.get("name") or ""
        self.dry_run: bool = bool(raw.get("dryRun"))
        self.user_info: dict = raw.get("userInfo") or {}
        self.object = raw.get("object")
        self.old_object = raw.get("oldObject")
        self.options = raw.get("options")
        self.warnings: List[str] = []
        self.audit_annotations: Dict[str, str] = {}
        #: When the answer is due (``time.monotonic()``); the host sets it from its deadline.
        self.deadline: float = time.monotonic() + 10.0 if deadline is None else deadline
        # When the mutator running now must be done by: the end of its budget (the pipeline sets it).
        self._due = self.deadline

    def time_left(self) -> float:
        """Seconds until the answer is due, or the running mutator's budget ends if that comes first
        (never below 0): the timeout for any wait a mutator does."""
        return max(min(self.deadline, self._due) - time.monotonic(), 0.0)

    @property
    def group(self) -> str:
        return self.resource.get("group") or ""

    @property
    def resource_path(self) -> str:
        """``"pods"`` or ``"pods/binding"``."""
        res = self.resource.get("resource") or ""
        return f"{res}/{self.sub_resource}" if self.sub_resource else res

    def warn(self, message: str) -> None:
        """Add a warning shown to the API client (kubectl prints them)."""
        self.warnings.append(message)

    def audit(self, key: str, value: str) -> None:
        """Add an audit annotation (the API server prefixes the key with the webhook name)."""
        self.audit_annotations[key] = str(value)

    def __repr__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"<AdmissionRequest {self.operation} {self.resource_path} {where} uid={self.uid}>"


def _fail(message: str) -> None:
    raise ReviewError(message)


def parse(body: bytes) -> tuple:
    """Return ``(apiVersion, request dict)`` or raise :class:`ReviewError` saying what is wrong."""
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # Told apart only here: strip() copies the whole body.
        if not body or not body.strip():
            _fail("empty body: expected an AdmissionReview JSON document")
        _fail(f"body is not valid JSON: {exc}")
    return validate(review)


_FIELD_TYPES = (("kind", dict), ("resource", dict), ("operation", str), ("subResource", str), ("namespace", str),
                ("name", str), ("dryRun", bool), ("userInfo", dict), ("object", dict), ("oldObject", dict))


def validate(review: Any) -> tuple:
    """An AdmissionReview (decoded) checked as the webhook checks what it receives:
    ``(apiVersion, request dict)``, or :class:`ReviewError` saying what is wrong."""
    if not isinstance(review, dict):
        _fail(f"expected an AdmissionReview object, got a JSON {type(review).__name__}")
    api_version = review.get("apiVersion")
    if review.get("kind") != "AdmissionReview":
        _fail(f"kind must be AdmissionReview, got {review.get('kind')!r}")
    if api_version not in VERSIONS:
        _fail(f"apiVersion must be one of {', '.join(VERSIONS)}, got {api_version!r}")
    request = review.get("request")
    if not isinstance(request, dict):
        _fail("AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        _fail("request.uid is missing or not a non-empty string")
    get = request.get
    for field, types in _FIELD_TYPES:
        value = get(field)
        if value is not None and type(value) is not types and not isinstance(value, types):
            _fail(f"request.{field} must be a {types.__name__}, got a JSON {type(value).__name__}")
    resource = request.get("resource") or {}
    if not isinstance(resource.get("resource"), str) or not resource.get("resource"):
        _fail("request.resource.resource is missing")
    if not isinstance(resource.get("group", ""), str):
        _fail("request.resource.group must be a string")
    if not request.get("operation"):
        _fail("request.operation is missing")
    return api_version, request


def answer(api_version: str, uid: str, outcome) -> Dict[str, Any]:
    """The AdmissionReview answering a request, as a dict: from an outcome of the pipeline
    (``patch``, ``denied`` as ``(code, message)``, ``warnings``, ``audit_annotations``)."""
    resp: Dict[str, Any] = {"uid": uid, "allowed": outcome.denied is None}
    if outcome.denied is not None:
        resp["status"] = {"code": outcome.denied[0], "message": outcome.denied[1]}
    elif outcome.patch:
        resp["patchType"] = "JSONPatch"
        resp["patch"] = base64.b64encode(orjson.dumps(outcome.patch)).decode()
    if outcome.warnings:
        resp["warnings"] = outcome.warnings
    if outcome.audit_annotations:
        resp["auditAnnotations"] = outcome.audit_annotations
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": resp}


def encode(api_version: str, uid: str, outcome) -> bytes:
    return orjson.dumps(answer(api_version, uid, outcome))


def plural(kind: str) -> str:
    """The resource name the API server gives a kind, by its default rule (Ingress -> ingresses,
    NetworkPolicy -> networkpolicies)."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lower[:-1] + "ies"
    return lower + "s"


def build(obj: dict, *, operation: str = "CREATE", resource: Optional[str] = None, sub_resource: str = "",
          group: Optional[str] = None, version: Optional[str] = None, namespace: Optional[str] = None,
          name: Optional[str] = None, dry_run: bool = False, api_version: str = "admission.k8s.io/v1",
          old_object: Optional[dict] = None, uid: Optional[str] = None, username: str = "tester") -> dict:
    """The AdmissionReview the API server sends for ``operation`` on ``obj``: the group, version
    and resource follow from the object's apiVersion and kind unless given; a Binding is the
    CREATE of ``pods/binding``."""
    meta = obj.get("metadata") or {}
    kind = obj.get("kind", "")
    obj_group, _, obj_version = (obj.get("apiVersion") or "v1").rpartition("/")
    group = obj_group if group is None else group
    version = obj_version if version is None else version
    resource_group = group
    if resource is None:
        if kind == "Binding":
            resource, sub_resource, resource_group = "pods", "binding", ""
        else:
            resource = plural(kind)
    request = {
        "uid": uid or str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": resource_group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": resource_group, "version": version, "resource": resource},
        "operation": operation,
        "namespace": meta.get("namespace", "") if namespace is None else namespace,
        "name": meta.get("name", "") if name is None else name,
        "userInfo": {"username": username},
        "object": obj,
        "oldObject": old_object,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": f"{operation.capitalize()}Options"},
    }
    if sub_resource:
        request["subResource"] = request["requestSubResource"] = sub_resource
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}
