"""What plugins declare to the host: mutators, watches and controllers."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from framework.webhook import check_skip

IGNORE = "Ignore"
FAIL = "Fail"
OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT", "*")
_RESOURCE = re.compile(r"^(\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)(/(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?))?$")
_VERSION = re.compile(r"^v[0-9]+((alpha|beta)[0-9]+)?$")
# Kinds written where a resource (a lowercase plural) belongs: a rule naming them never matches.
_SINGULARS = {"pod": "pods", "node": "nodes", "namespace": "namespaces", "service": "services",
              "deployment": "deployments", "replicaset": "replicasets", "statefulset": "statefulsets",
              "daemonset": "daemonsets", "job": "jobs", "cronjob": "cronjobs", "configmap": "configmaps",
              "secret": "secrets", "ingress": "ingresses", "binding": "bindings", "event": "events",
              "serviceaccount": "serviceaccounts", "persistentvolumeclaim": "persistentvolumeclaims"}


def _check_declaration(name: str, resources: Tuple[str, ...], operations: Tuple[str, ...], group: str) -> None:
    """Mistakes that would make a mutator silently never match: refuse them with a hint."""
    for op in operations:
        if op not in OPERATIONS:
            hint = f" (did you mean {op.upper()!r}?)" if op.upper() in OPERATIONS else ""
            raise ValueError(f"mutator {name!r}: unknown operation {op!r}{hint}; "
                             f"operations are {', '.join(OPERATIONS)}")
    for resource in resources:
        base = resource.partition("/")[0]
        if not _RESOURCE.match(resource) or base.lower() in _SINGULARS:
            plural = _SINGULARS.get(base.lower(), base.lower())
            raise ValueError(f"mutator {name!r}: resource {resource!r} must be a lowercase plural as in a "
                             f"webhook rule, e.g. {resource.replace(base, plural, 1).lower()!r}")
    if group != "*" and (_VERSION.match(group) or "/" in group or group != group.lower()):
        raise ValueError(f"mutator {name!r}: group {group!r} looks like a version or apiVersion; group is the "
                         f"API group alone ('' for core, 'apps', 'batch'), without the version")


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
    ``skip`` names what it never wants (``"daemonset-pods"``...: ``framework.webhook.SKIPS``): the
    webhook's matchConditions keep it from being sent while no other mutator wants it. It is no
    filter: such a request may still come (another mutator wants it, an API server before 1.28).
    ``budget_seconds`` is the most one call may take (None: the host's default); past it the
    mutator is abandoned, as if it had failed, and the ones after it still run.
    """

    name: str
    mutate: Callable[[Any], None]
    resources: Tuple[str, ...] = ("pods",)
    operations: Tuple[str, ...] = ("CREATE",)
    group: str = ""
    order: int = 0
    failure_policy: str = IGNORE
    paths: Optional[Tuple[str, ...]] = None
    inline: bool = False
    nonblocking: bool = False
    budget_seconds: Optional[float] = None
    skip: Tuple[str, ...] = ()
    plugin: str = ""  # filled in by the host

    def __post_init__(self):
        if self.nonblocking:  # what never waits runs in the request's thread, whichever it is
            object.__setattr__(self, "inline", True)
        object.__setattr__(self, "resources", _tuple(self.resources))
        object.__setattr__(self, "operations", _tuple(self.operations))
        if self.paths is not None:
            object.__setattr__(self, "paths", _tuple(self.paths))
            if not self.paths or not all(isinstance(p, str) and p and "" not in p.split(".") for p in self.paths):
                raise ValueError(f"mutator {self.name!r}: paths must be dotted paths such as 'metadata.labels'")
        if self.failure_policy not in (IGNORE, FAIL):
            raise ValueError(f"mutator {self.name!r}: failure_policy must be Ignore or Fail, "
                             f"not {self.failure_policy!r}")
        if self.budget_seconds is not None and (isinstance(self.budget_seconds, bool)
                                                or not isinstance(self.budget_seconds, (int, float))
                                                or not self.budget_seconds > 0):
            raise ValueError(f"mutator {self.name!r}: budget_seconds must be a number of seconds above 0, "
                             f"not {self.budget_seconds!r}")
        if not callable(self.mutate):
            raise TypeError(f"mutator {self.name!r}: mutate must be callable")
        _check_declaration(self.name, self.resources, self.operations, self.group)
        object.__setattr__(self, "skip", _tuple(self.skip))
        check_skip(self.name, self.skip)

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
