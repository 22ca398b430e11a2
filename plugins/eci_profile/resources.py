"""What a pod asks of a node and what a node offers, in the few numbers drain-back's fit uses."""

from __future__ import annotations

import functools
import re
from decimal import Decimal, InvalidOperation
from typing import Mapping, Optional, Tuple

# Kubernetes' resource.Quantity: a number, then a binary (Ki..Ei) or decimal (n..E) suffix or a
# decimal exponent. Parsed here rather than with the kubernetes package's parse_quantity, whose
# import loads the whole generated client (18 MB in every process, for this one function).
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(value) -> Decimal:
    """A quantity (``"100m"``, ``"1.5Gi"``, ``"2e3"``, or a number) as a Decimal; ValueError if it is none."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Decimal(str(value))
    match = _QUANTITY.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a quantity")
    number, suffix = match.groups()
    try:
        amount = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a quantity") from None
    if not suffix:
        return amount
    if suffix in _BINARY:
        return amount * (1024 ** _BINARY[suffix])
    exponent = _DECIMAL[suffix] if suffix in _DECIMAL else int(suffix[1:])
    return amount.scaleb(exponent)


def _request(req: Mapping, name: str, scale: int) -> int:
    value = req.get(name, 0)
    try:
        return _scaled(value, scale)
    except TypeError:  # unhashable: not a quantity
        return 0


@functools.lru_cache(maxsize=4096, typed=True)  # typed: True is not 1 here
def _scaled(value, scale: int) -> int:
    """A quantity in units of 1/``scale``. Every watch event of a pod asks again, and a cluster's
    pods ask for a few distinct amounts: each is parsed once."""
    try:
        return int(parse_quantity(value) * scale)
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
