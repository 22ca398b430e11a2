"""Example plugin: set ``controller.kubernetes.io/pod-deletion-cost`` from a pod label.

A workload labels its pods ``example.com/deletion-cost: "-100"`` and gets the annotation that the
ReplicaSet controller reads when scaling down. Shows the smallest useful plugin: one mutator,
options from the config file, a warning on bad input.

Config::

    plugins:
      pod_deletion_cost:
        label: example.com/deletion-cost    # the default
"""

import dataclasses

from framework import Mutator, hookimpl

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
DEFAULT_LABEL = "example.com/deletion-cost"


def make_mutator(label: str) -> Mutator:
    def mutate(request):
        meta = request.object.setdefault("metadata", {})
        value = (meta.get("labels") or {}).get(label)
        if value is None:
            return
        annotations = meta.get("annotations") or {}
        if ANNOTATION in annotations:
            return  # the pod's own value wins, and a reinvocation changes nothing
        try:
            cost = int(value)
        except ValueError:
            request.warn(f"label {label}={value!r} is not an integer; {ANNOTATION} not set")
            return
        if not -(2 ** 31) <= cost < 2 ** 31:
            request.warn(f"label {label}={value!r} is outside int32; {ANNOTATION} not set")
            return
        meta.setdefault("annotations", {})[ANNOTATION] = str(cost)

    return Mutator(name="pod-deletion-cost", mutate=mutate, resources=("pods",), operations=("CREATE",),
                   order=100, paths=("metadata.annotations",), nonblocking=True)


@dataclasses.dataclass
class Options:
    label: str = dataclasses.field(default=DEFAULT_LABEL, metadata={"help": "the pod label holding the cost"})


@hookimpl
def admission_host_options():
    return Options


@hookimpl
def admission_host_mutators(options):
    return [make_mutator(options.label)]
