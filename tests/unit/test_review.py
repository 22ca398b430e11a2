"""AdmissionReview in (parse: every broken call says what is wrong) and out (response)."""

import base64
from types import SimpleNamespace

import orjson
import pytest

from framework.admission.review import AdmissionRequest, ReviewError, encode, parse


def response(api_version, uid, patch=None, warnings=None, audit_annotations=None, denied=None):
    verdict = SimpleNamespace(patch=patch or [], denied=denied, warnings=warnings or [],
                              audit_annotations=audit_annotations or {})
    return encode(api_version, uid, verdict)
from framework.testing import pod, review


def body(**overrides) -> bytes:
    sent = review(pod("p"), uid="u-1")
    for key, value in overrides.items():
        if key.startswith("request_"):
            field = key[len("request_"):]
            if value is ...:
                del sent["request"][field]
            else:
                sent["request"][field] = value
        elif value is ...:
            del sent[key]
        else:
            sent[key] = value
    return orjson.dumps(sent)


def test_a_valid_review_parses():
    api_version, request = parse(body())
    assert api_version == "admission.k8s.io/v1"
    assert request["uid"] == "u-1"
    assert request["object"]["metadata"]["name"] == "p"


def test_v1beta1_parses():
    api_version, _ = parse(body(apiVersion="admission.k8s.io/v1beta1"))
    assert api_version == "admission.k8s.io/v1beta1"


@pytest.mark.parametrize("raw, says", [
    (b"", "empty body"),
    (b"  \n", "empty body"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[1, 2]", "got a JSON list"),
    (b'"AdmissionReview"', "got a JSON str"),
    (body(kind="Pod"), "kind must be AdmissionReview, got 'Pod'"),
    (body(kind=...), "kind must be AdmissionReview, got None"),
    (body(apiVersion="admission.k8s.io/v2"), "apiVersion must be one of"),
    (body(apiVersion=...), "got None"),
    (body(request=...), "has no request object"),
    (body(request=[]), "has no request object"),
    (body(request_uid=...), "request.uid is missing"),
    (body(request_uid=""), "request.uid is missing"),
    (body(request_uid=7), "request.uid is missing or not a non-empty string"),
    (body(request_object=[]), "request.object must be a dict, got a JSON list"),
    (body(request_oldObject="x"), "request.oldObject must be a dict, got a JSON str"),
    (body(request_dryRun="yes"), "request.dryRun must be a bool, got a JSON str"),
    (body(request_operation=1), "request.operation must be a str, got a JSON int"),
    (body(request_operation=...), "request.operation is missing"),
    (body(request_namespace={}), "request.namespace must be a str"),
    (body(request_userInfo="me"), "request.userInfo must be a dict"),
    (body(request_resource="pods"), "request.resource must be a dict"),
    (body(request_resource={"group": "", "version": "v1"}), "request.resource.resource is missing"),
    (body(request_resource={"group": 1, "version": "v1", "resource": "pods"}), "request.resource.group must be a string"),
    (body(request_subResource=["binding"]), "request.subResource must be a str"),
])
def test_broken_reviews_say_what_is_wrong(raw, says):
    with pytest.raises(ReviewError) as info:
        parse(raw)
    assert says in info.value.message
    assert info.value.status == 400


def test_request_attributes():
    _, raw = parse(body(request_subResource="binding", request_dryRun=True))
    req = AdmissionRequest(raw)
    assert (req.uid, req.operation, req.namespace, req.name) == ("u-1", "CREATE", "default", "p")
    assert req.group == "" and req.resource_path == "pods/binding"
    assert req.dry_run is True
    assert req.user_info == {"username": "tester"}
    assert req.old_object is None
    req.warn("w")
    req.audit("k", 3)
    assert req.warnings == ["w"] and req.audit_annotations == {"k": "3"}
    assert "pods/binding default/p uid=u-1" in repr(req)


def decode(answer: bytes) -> dict:
    return orjson.loads(answer)


@pytest.mark.parametrize("api_version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_response_echoes_version_and_uid(api_version):
    out = decode(response(api_version, "abc"))
    assert out == {"apiVersion": api_version, "kind": "AdmissionReview",
                   "response": {"uid": "abc", "allowed": True}}


def test_response_without_changes_has_no_patch():
    out = decode(response("admission.k8s.io/v1", "u", patch=[]))["response"]
    assert "patch" not in out and "patchType" not in out


def test_response_with_patch_warnings_and_audit():
    patch = [{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]
    out = decode(response("admission.k8s.io/v1", "u", patch=patch, warnings=["careful"],
                          audit_annotations={"selector": "s1"}))["response"]
    assert out["allowed"] is True
    assert out["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(out["patch"])) == patch
    assert out["warnings"] == ["careful"]
    assert out["auditAnnotations"] == {"selector": "s1"}


def test_denied_response_has_status_and_no_patch():
    out = decode(response("admission.k8s.io/v1beta1", "u", denied=(403, "no"), warnings=["w"]))
    assert out["apiVersion"] == "admission.k8s.io/v1beta1"
    assert out["response"] == {"uid": "u", "allowed": False, "status": {"code": 403, "message": "no"},
                               "warnings": ["w"]}
