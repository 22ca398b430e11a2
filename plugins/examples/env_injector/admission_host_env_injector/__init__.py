"""Example third-party plugin: inject environment variables into the containers of pods whose
namespace carries a label.

It shows a watch (Namespaces, stripped to name and labels), a mutator that reads that cache,
options, and readiness. Installed as its own distribution; the host finds it by its entry point.

Config::

    plugins:
      env_injector:
        namespaceLabel: env-injector.example.com/enabled   # namespaces with this label set to "true"
        env: {CLUSTER_NAME: prod-eu-1}
"""

import dataclasses
from typing import Dict, Union

from framework import Mutator, Watch, hookimpl

DEFAULT_LABEL = "env-injector.example.com/enabled"


def strip_namespace(obj):
    meta = obj.get("metadata") or {}
    return {"metadata": {"name": meta.get("name"), "labels": meta.get("labels") or {}}}


@dataclasses.dataclass
class Options:
    namespace_label: str = dataclasses.field(
        default=DEFAULT_LABEL, metadata={"help": 'pods of namespaces with this label set to "true" get the variables'})
    env: Dict[str, Union[str, int, float, bool]] = dataclasses.field(
        default_factory=dict, metadata={"help": "the variables: name -> value"})


@hookimpl
def admission_host_options():
    return Options


@hookimpl
def admission_host_watches():
    return [Watch(name="env-injector-namespaces", resource="namespaces", kind="Namespace",
                  transform=strip_namespace)]


@hookimpl
def admission_host_mutators(host, options):
    label = options.namespace_label
    env = [{"name": k, "value": str(v)} for k, v in sorted(options.env.items())]
    namespaces = host.store("env-injector-namespaces")

    def mutate(request):
        ns = namespaces.get_by_name(request.namespace)
        if not env or ns is None or ns["metadata"]["labels"].get(label) != "true":
            return
        spec = request.object.get("spec") or {}
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            have = {e.get("name") for e in container.get("env") or ()}
            missing = [e for e in env if e["name"] not in have]  # the pod's own values win
            if missing:
                container.setdefault("env", []).extend(dict(e) for e in missing)

    # nonblocking: it only reads caches, so it can run on the event loop
    return [Mutator(name="env-injector", mutate=mutate, resources=("pods",), operations=("CREATE",), nonblocking=True)]
