"""What a pod asks of a node and what a node offers, in the few numbers drain-back's fit uses."""

from __future__ import annotations

from typing import Mapping, Optional, Tuple

from kubernetes.utils.quantity import parse_quantity


def _request(req: Mapping, name: str, scale: int) -> int:
    try:
        return int(parse_quantity(req.get(name, 0)) * scale)
    except (ValueError, TypeError, ArithmeticError):  # the API server validates them; objects from files may not be
        return 0


def requests_of(spec: Mapping) -> Tuple[int, int]:
    """A pod's CPU (millicores) and memory (bytes) requests, as the scheduler sums them."""
    cpu = mem = 0
    for c in spec.get("containers") or ():
        req = (c.get("resources") or {}).get("requests") or {}
        cpu += _request(req, "cpu", 1000)
        mem += _request(req, "memory", 1)
    for c in spec.get("initContainers") or ():  # an init container runs alone: the largest counts
        req = (c.get("resources") or {}).get("requests") or {}
        cpu = max(cpu, _request(req, "cpu", 1000))
        mem = max(mem, _request(req, "memory", 1))
    return cpu, mem


def node_fit(obj: Mapping) -> Optional[dict]:
    """A node's allocatable CPU, memory and pods, whether it takes pods, and its hard taints."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    alloc = status.get("allocatable")
    if not alloc:
        return None
    return {"cpu": _request(alloc, "cpu", 1000), "memory": _request(alloc, "memory", 1),
            "pods": _request(alloc, "pods", 1),
            "ready": any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()),
            "unschedulable": bool(spec.get("unschedulable")),
            "taints": [{k: t.get(k) for k in ("key", "value", "effect")} for t in spec.get("taints") or ()
                       if t.get("effect") in ("NoSchedule", "NoExecute")]}
