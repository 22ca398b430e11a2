"""Helpers for ECI-Profile tests: a harness with the plugin, static caches and a recording API."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import pytest
import yaml

from framework import ApiError
from framework.testing import PluginHarness, namespace, node
from plugins.eci_profile import plugin as eci

EXAMPLES = Path(__file__).resolve().parents[2] / "deploy" / "examples"
VNODE = {"k8s.aliyun.com/vnode": "true"}
TOLERATION = {"key": "k8s.aliyun.com/vnode", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


def seed(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def selector(name: str, policy: str = "fair", priority: Optional[int] = None, object_labels=None,
             namespace_labels=None, annotations=None, labels=None, api_version="eci.aliyun.com/v1") -> dict:
    spec: dict = {"policy": {policy: {}}}
    if priority is not None:
        spec["priority"] = priority
    if object_labels is not None:
        spec["objectLabels"] = object_labels
    if namespace_labels is not None:
        spec["namespaceLabels"] = namespace_labels
    effect = {}
    if annotations:
        effect["annotations"] = annotations
    if labels:
        effect["labels"] = labels
    if effect:
        spec["effect"] = effect
    return {"apiVersion": api_version, "kind": "Selector", "metadata": {"name": name}, "spec": spec}


class RecordingKube:
    """Answers GETs from a dict of objects by path and records every write."""

    def __init__(self, objects: Optional[dict] = None, fail_patch: Optional[ApiError] = None):
        self.objects = dict(objects or {})
        self.calls: List[tuple] = []
        self.fail_patch = fail_patch

    def get(self, path, timeout=None, **query):
        self.calls.append(("GET", path, None))
        if path not in self.objects:
            raise ApiError(404, f"GET {path}: not found")
        return self.objects[path]

    def patch(self, path, body, content_type=None, timeout=None, **query):
        assert "timeout" not in query
        self.calls.append(("PATCH", path, body))
        if self.fail_patch is not None:
            error, self.fail_patch = self.fail_patch, None
            raise error
        return {}

    def post(self, path, body, timeout=None, **query):
        self.calls.append(("POST", path, body))
        return body

    def writes(self, method="PATCH"):
        return [c for c in self.calls if c[0] == method]


def default_objects():
    return [namespace("default"), namespace("prod", {"env": "prod"}), node("vk-1", VNODE), node("normal-1")]


@pytest.fixture
def make_harness():
    made = []

    def make(*selectors, objects=None, options=None, kube=None, extra_plugins=()):
        harness = PluginHarness(("eci_profile", eci), *extra_plugins,
                                options={"eci_profile": options} if options is not None else None,
                                objects=list(objects if objects is not None else default_objects()) + list(selectors),
                                kube=kube)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()
