"""The four scheduling policies, and the default matching and resolution, as ``eci_*`` hookimpls.

| policy           | at pod creation                                  | effect at creation | when Unschedulable |
|------------------|--------------------------------------------------|--------------------|--------------------|
| fair             | add the virtual-node tolerations                 | no                 | -                  |
| normalNodeOnly   | nothing                                          | no                 | -                  |
| normalNodePrefer | nothing                                          | no                 | add the tolerations (burst.py, timing.py) |
| virtualNodeOnly  | tolerations + virtual-node labels in nodeSelector | yes               | -                  |

At binding time (pods/binding to a virtual node) every policy gets its effect. Pods created with
spec.nodeName, DaemonSet pods and static pods are left alone (profile.left_alone).
"""

from __future__ import annotations

from typing import List

from framework import hookimpl


class Policy:
    """A scheduling policy. Subclass it and return instances from ``eci_policies``."""

    #: the key under ``spec.policy``
    name = ""
    #: apply the Selector's effect at creation (the pod is certain to run on a virtual node)
    effect_at_create = False
    #: add the tolerations to a pending pod the scheduler found Unschedulable
    burst_when_unschedulable = False
    #: ``at_create`` adds the virtual-node tolerations: a pending pod admitted without them (while
    #: no replica answered) gets them from the leader
    tolerate_at_create = False

    def __init__(self, settings):
        self.settings = settings

    def at_create(self, pod: dict, request) -> List[str]:
        """Edit the pod being created; return short descriptions of what changed."""
        return []


def add_tolerations(pod: dict, settings) -> List[str]:
    spec = pod.setdefault("spec", {})
    missing = settings.missing_tolerations(spec.get("tolerations"))
    if missing:
        spec.setdefault("tolerations", []).extend(missing)
    return [f"toleration {t.get('key', '')}" for t in missing]


class Fair(Policy):
    name = "fair"
    tolerate_at_create = True

    def at_create(self, pod, request):
        return add_tolerations(pod, self.settings)


class NormalNodeOnly(Policy):
    name = "normalNodeOnly"


class NormalNodePrefer(Policy):
    name = "normalNodePrefer"
    burst_when_unschedulable = True


class VirtualNodeOnly(Policy):
    name = "virtualNodeOnly"
    effect_at_create = True
    tolerate_at_create = True

    def at_create(self, pod, request):
        changed = add_tolerations(pod, self.settings)
        spec = pod.setdefault("spec", {})
        node_selector = spec.get("nodeSelector")
        if not isinstance(node_selector, dict):
            node_selector = spec["nodeSelector"] = {}
        for key, value in self.settings.virtual_node_labels.items():
            have = node_selector.get(key)
            if have == value:
                continue
            if have is not None:
                request.warn(f"eci-profile: nodeSelector {key}={have} replaced by {key}={value} "
                             f"(policy virtualNodeOnly)")
            node_selector[key] = value  # merged: the pod's other nodeSelector keys stay
            changed.append(f"nodeSelector {key}")
        return changed


@hookimpl
def eci_policies(settings):
    return [Fair(settings), NormalNodeOnly(settings), NormalNodePrefer(settings), VirtualNodeOnly(settings)]


@hookimpl(trylast=True)
def eci_selector_matches(selector, pod_labels, namespace_labels):
    return selector.matches(pod_labels, namespace_labels)


@hookimpl(trylast=True)
def eci_resolve(matching):
    return matching[0]
