"""AdmissionReview ``admission.k8s.io/v1`` and ``v1beta1``: parsing, validation, responses."""

from __future__ import annotations

import base64
import time
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
                 "warnings", "audit_annotations", "deadline")

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

    def time_left(self) -> float:
        """Seconds until the answer is due (never below 0): the timeout for any wait a mutator does."""
        return max(self.deadline - time.monotonic(), 0.0)

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
    if not body or not body.strip():
        _fail("empty body: expected an AdmissionReview JSON document")
    try:
        review = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        _fail(f"body is not valid JSON: {exc}")
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
    for field, types in (("kind", dict), ("resource", dict), ("operation", str), ("subResource", str),
                         ("namespace", str), ("name", str), ("dryRun", bool), ("userInfo", dict),
                         ("object", dict), ("oldObject", dict)):
        value = request.get(field)
        if value is not None and not isinstance(value, types):
            _fail(f"request.{field} must be a {types.__name__}, got a JSON {type(value).__name__}")
    resource = request.get("resource") or {}
    if not isinstance(resource.get("resource"), str) or not resource.get("resource"):
        _fail("request.resource.resource is missing")
    if not isinstance(resource.get("group", ""), str):
        _fail("request.resource.group must be a string")
    if not request.get("operation"):
        _fail("request.operation is missing")
    return api_version, request


def response(api_version: str, uid: str, *, patch: Optional[List[dict]] = None,
             warnings: Optional[List[str]] = None, audit_annotations: Optional[dict] = None,
             denied: Optional[tuple] = None) -> bytes:
    """Serialise an AdmissionReview response. ``denied`` is ``(code, message)``."""
    resp: Dict[str, Any] = {"uid": uid, "allowed": denied is None}
    if denied is not None:
        resp["status"] = {"code": denied[0], "message": denied[1]}
    if patch:
        resp["patchType"] = "JSONPatch"
        resp["patch"] = base64.b64encode(orjson.dumps(patch)).decode()
    if warnings:
        resp["warnings"] = warnings
    if audit_annotations:
        resp["auditAnnotations"] = audit_annotations
    return orjson.dumps({"apiVersion": api_version, "kind": "AdmissionReview", "response": resp})
