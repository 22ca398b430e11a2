"""The benchmark's mutator: two annotations and a toleration, as a plugin would add them.

Idempotent like every mutator must be: a pod that already has them is left unchanged.
"""

from framework import Mutator, hookimpl

ANNOTATIONS = {"bench.example.com/profile": "burst", "bench.example.com/applied-by": "bench-selector"}
TOLERATION = {"key": "virtual-kubelet.io/provider", "operator": "Equal", "value": "alibabacloud",
              "effect": "NoSchedule"}


def mutate(request):
    pod = request.object
    meta = pod.setdefault("metadata", {})
    annotations = meta.get("annotations")
    if annotations is None:
        annotations = meta["annotations"] = {}
    for key, value in ANNOTATIONS.items():
        annotations.setdefault(key, value)
    spec = pod.setdefault("spec", {})
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = spec["tolerations"] = []
    if TOLERATION not in tolerations:
        tolerations.append(dict(TOLERATION))


PATHS = ("metadata.annotations", "spec.tolerations")

# As the bundled plugins do, the mutator declares the parts of the pod it changes, so the host
# snapshots and diffs only those, and is nonblocking (it waits for nothing: answered on the event
# loop); UNDECLARED is the same mutator without the paths, ON_RUNNER the same one handed to a
# runner thread.
MUTATOR = Mutator(name="bench-two-annotations-and-a-toleration", mutate=mutate, resources=("pods",),
                  operations=("CREATE",), paths=PATHS, nonblocking=True)
UNDECLARED = Mutator(name="bench-two-annotations-and-a-toleration", mutate=mutate, resources=("pods",),
                     operations=("CREATE",), inline=True)
ON_RUNNER = Mutator(name="bench-two-annotations-and-a-toleration", mutate=mutate, resources=("pods",),
                    operations=("CREATE",), paths=PATHS)


@hookimpl
def admission_host_mutators():
    return [MUTATOR]
