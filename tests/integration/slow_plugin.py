"""A test-only plugin: a mutator that is slow, or that answers with a large patch, on request.

- label ``slow: "<seconds>"`` (``"1"`` means one second): the mutator sleeps that long and then
  adds the annotation ``test.example.com/slept``;
- label ``fat: "<bytes>"``: the mutator adds an annotation ``test.example.com/fat`` of that many
  bytes, so the answer is at least that large.
"""

import time

from framework import Mutator, hookimpl

SLEPT = "test.example.com/slept"
FAT = "test.example.com/fat"


def mutate(request):
    meta = request.object.setdefault("metadata", {})
    labels = meta.get("labels") or {}
    if "slow" in labels:
        seconds = float(labels["slow"])
        time.sleep(seconds)
        meta.setdefault("annotations", {})[SLEPT] = labels["slow"]
    if "fat" in labels:
        meta.setdefault("annotations", {})[FAT] = "x" * int(labels["fat"])


@hookimpl
def admission_host_mutators():
    # As slow as asked: only the request's deadline bounds it, not the host's default budget.
    return [Mutator(name="test-slow-or-fat", mutate=mutate, resources=("pods",), operations=("CREATE",),
                    order=50, budget_seconds=3600.0)]
