"""The four scheduling policies, and the default matching and resolution, as ``eci_*`` hookimpls.

Each policy is a preset of tiers (plugins.eci_profile.tiers): what the table says is what its
tiers do.

| policy           | at pod creation                                  | effect at creation | when Unschedulable |
|------------------|--------------------------------------------------|--------------------|--------------------|
| fair             | add the virtual-node tolerations                 | no                 | -                  |
| normalNodeOnly   | nothing                                          | no                 | -                  |
| normalNodePrefer | nothing                                          | no                 | add the tolerations (burst.py, timing.py) |
| virtualNodeOnly  | tolerations + virtual-node labels in nodeSelector | yes               | -                  |

At binding time (pods/binding to a virtual node) every policy gets its effect; a pod created with
spec.nodeName of a virtual node gets it at creation. DaemonSet pods and static pods are left alone
(profile.left_alone), and so is a pod created on a normal node.
"""

from __future__ import annotations

from typing import List

from framework import hookimpl


class Policy:
    """A scheduling policy. Subclass it and return instances from ``eci_policies``."""

    #: the key under ``spec.policy``
    name = ""
    # The flags make its tiers (tiers.preset):
    #: only virtual nodes: tiers [virtual], the effect at creation (the pod is certain to run there)
    effect_at_create = False
    #: tiers [normal, virtual]: a pod Unschedulable on normal nodes moves on to virtual ones
    burst_when_unschedulable = False
    #: tiers [normal, virtual] both open at creation: the virtual-node tolerations are added then
    #: (and by the leader to a pending pod admitted without them while no replica answered)
    tolerate_at_create = False

    def __init__(self, settings):
        self.settings = settings

    def at_create(self, pod: dict, request) -> List[str]:
        """Edit the pod being created, beyond what its tiers give it (the tolerations of the tiers
        open at creation, the fence to their nodes); return short descriptions of what changed."""
        return []


def add_tolerations(pod: dict, settings) -> List[str]:
    spec = pod.setdefault("spec", {})
    missing = settings.missing_tolerations(spec.get("tolerations"))
    if missing:
        spec.setdefault("tolerations", []).extend(missing)
    return [f"toleration {t.get('key', '')}" for t in missing]


# What each built-in policy does to a pod is its tiers' doing (tiers.preset, tiers.place_at_create):
# the flags are all they need.
class Fair(Policy):
    name = "fair"
    tolerate_at_create = True


class NormalNodeOnly(Policy):
    name = "normalNodeOnly"


class NormalNodePrefer(Policy):
    name = "normalNodePrefer"
    burst_when_unschedulable = True


class VirtualNodeOnly(Policy):
    name = "virtualNodeOnly"
    effect_at_create = True
    tolerate_at_create = True


BUILT_IN = {policy.name: policy for policy in (Fair, NormalNodeOnly, NormalNodePrefer, VirtualNodeOnly)}


@hookimpl
def eci_policies(settings):
    return [Fair(settings), NormalNodeOnly(settings), NormalNodePrefer(settings), VirtualNodeOnly(settings)]


@hookimpl(trylast=True)
def eci_selector_matches(selector, pod_labels, namespace_labels):
    return selector.matches(pod_labels, namespace_labels)


@hookimpl(trylast=True)
def eci_resolve(matching):
    return matching[0]
