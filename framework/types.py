"""What plugins declare to the host: mutators, watches and controllers."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

IGNORE = "Ignore"
FAIL = "Fail"


class Denied(Exception):
    """Raised by a mutator to reject the request (the API operation, not the webhook call)."""

    def __init__(self, message: str, code: int = 403):
        super().__init__(message)
        self.message = message
        self.code = code


def _tuple(value: Iterable[str] | str) -> Tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@dataclasses.dataclass(frozen=True)
class Mutator:
    """A function that edits ``request.object`` in place.

    ``resources`` names what it wants to see: ``"pods"``, ``"pods/binding"`` (resource/subresource),
    ``"*"`` (every resource, no subresource) or ``"*/*"`` (everything), as in a webhook rule;
    ``group`` is the API group (``""`` is core, ``"*"`` any). Mutators run in ascending
    ``order``, then by name; each sees the previous one's result. They must be idempotent: the API
    server may call the webhook again for the same object (reinvocationPolicy IfNeeded).
    """

    name: str
    mutate: Callable[[Any], None]
    resources: Tuple[str, ...] = ("pods",)
    operations: Tuple[str, ...] = ("CREATE",)
    group: str = ""
    order: int = 0
    failure_policy: str = IGNORE
    paths: Optional[Tuple[str, ...]] = None
    plugin: str = ""  # filled in by the host

    def __post_init__(self):
        object.__setattr__(self, "resources", _tuple(self.resources))
        object.__setattr__(self, "operations", _tuple(self.operations))
        if self.paths is not None:
            object.__setattr__(self, "paths", _tuple(self.paths))
            if not self.paths or not all(isinstance(p, str) and p and "" not in p.split(".") for p in self.paths):
                raise ValueError(f"mutator {self.name!r}: paths must be dotted paths such as 'metadata.labels'")
        if self.failure_policy not in (IGNORE, FAIL):
            raise ValueError(f"mutator {self.name!r}: failure_policy must be Ignore or Fail, "
                             f"not {self.failure_policy!r}")
        if not callable(self.mutate):
            raise TypeError(f"mutator {self.name!r}: mutate must be callable")

    def wants(self, group: str, resource: str, operation: str) -> bool:
        """``resource`` is ``"pods"`` or ``"pods/binding"``.

        ``resources`` match as in a webhook rule: ``"*"`` is every resource but no subresource,
        ``"*/*"`` every resource and subresource, ``"pods/*"`` pods and its subresources,
        ``"*/status"`` the status subresource of every resource.
        """
        if self.group != "*" and self.group != group:
            return False
        if "*" not in self.operations and operation not in self.operations:
            return False
        name, _, sub = resource.partition("/")
        for wanted in self.resources:
            wanted_name, _, wanted_sub = wanted.partition("/")
            if wanted_name in ("*", name) and wanted_sub in ("*", sub):
                return True
        return False


@dataclasses.dataclass(frozen=True)
class Watch:
    """A resource kept in a local cache (list, then watch).

    ``transform`` receives each object as a dict and returns what to store (strip what is not
    needed: memory matters on clusters with many objects). ``indexers`` map an index name to a
    function returning the index values of an object. ``kind`` lets offline runs
    (``admission-host mutate --objects``) route objects to this cache.
    """

    name: str
    resource: str
    kind: str
    version: str = "v1"
    group: str = ""
    namespace: Optional[str] = None
    label_selector: Optional[str] = None
    field_selector: Optional[str] = None
    transform: Optional[Callable[[dict], dict]] = None
    indexers: Mapping[str, Callable[[dict], Iterable[str]]] = dataclasses.field(default_factory=dict)
    plugin: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespace:
            base += f"/namespaces/{self.namespace}"
        return f"{base}/{self.resource}"


@dataclasses.dataclass(frozen=True)
class Controller:
    """A background loop that runs only on the elected leader.

    ``run(stop)`` is called in its own thread when this replica becomes leader and must return
    soon after ``stop`` (a ``threading.Event``) is set, which happens when leadership is lost or
    the host shuts down. It may be called again after a later election.
    """

    name: str
    run: Callable[[Any], None]
    plugin: str = ""


Options = Dict[str, Any]
