"""``kubectl eci``: ECI-Profile for admins who live in kubectl (the executable ``kubectl-eci``).

    kubectl eci selectors               # each Selector: priority, policy, what it matches, the pods it
                                        # wins now, virtual pods / cap, pods waiting to burst, valid
    kubectl eci explain POD [-n NS]     # why the pod is (or would be) mutated the way it is

Both decide with ECI-Profile's own resolution, on what the cluster holds now, with the host's
options for the plugin read from its ConfigMap (``--host-config NAMESPACE/NAME``: a ConfigMap, or the
Deployment whose config ConfigMap to read; default ``admission-host/admission-host``, the host's
Deployment; absent: the defaults). kubectl passes its own ``--kubeconfig``,
``--context`` and ``-n`` through.
"""

from __future__ import annotations

import argparse
import gc
import sys
from typing import Dict, Iterable, List, Optional

import yaml

from framework import METADATA_ONLY, ApiError, CredentialsError, KubeClient, list_pages

HOST_CONFIG = "admission-host/admission-host"
# The count needs a pod's labels, owners and annotations: its metadata only, finished pods left out
# by the API server. A large page is fewer round trips through 50,000 pods.
UNFINISHED = "status.phase!=Succeeded,status.phase!=Failed"
PAGE = 2000


def _parser() -> argparse.ArgumentParser:
    # kubectl passes its flags where the user wrote them: before or after the subcommand.
    def common(suppress: bool) -> argparse.ArgumentParser:
        default = argparse.SUPPRESS if suppress else None
        p = argparse.ArgumentParser(add_help=False)
        p.add_argument("--kubeconfig", default=default)
        p.add_argument("--context", default=default)
        p.add_argument("-n", "--namespace", default=default)
        p.add_argument("--host-config", default=argparse.SUPPRESS if suppress else HOST_CONFIG,
                       metavar="NAMESPACE/NAME",
                       help="the host's ConfigMap, or the Deployment whose ConfigMap to read, for ECI-Profile's "
                            "options (default admission-host/admission-host)")
        return p

    parser = argparse.ArgumentParser(prog="kubectl eci", description=__doc__, parents=[common(False)],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("selectors", parents=[common(True)], help="every Selector, in the order they win")
    explain = sub.add_parser("explain", parents=[common(True)], help="why a pod is mutated the way it is")
    explain.add_argument("pod", metavar="POD")
    return parser


def eci_options(kube: KubeClient, where: str) -> dict:
    """ECI-Profile's section of the host's config file ({} when there is none), from the ConfigMap
    ``NAMESPACE/NAME``, or else the one the Deployment ``NAMESPACE/NAME`` mounts (deploy/ names its
    ConfigMap after a hash of the file, so the Deployment is what has a name to find it by)."""
    namespace, _, name = where.partition("/")
    config_map = _get(kube, f"/api/v1/namespaces/{namespace}/configmaps/{name}")
    if config_map is None:
        deployment = _get(kube, f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}") or {}
        volumes = (((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("volumes") or ()
        mounted = next((v["configMap"]["name"] for v in volumes if (v.get("configMap") or {}).get("name")), None)
        config_map = mounted and _get(kube, f"/api/v1/namespaces/{namespace}/configmaps/{mounted}")
    if not config_map:
        return {}
    config = yaml.safe_load((config_map.get("data") or {}).get("config.yaml") or "") or {}
    return ((config.get("plugins") or {}).get("eci_profile")) or {}


def _get(kube: KubeClient, path: str) -> Optional[dict]:
    try:
        return kube.get(path)
    except ApiError as exc:
        if exc.status in (403, 404):
            return None
        raise


def default_namespace(kubeconfig: Optional[str], context: Optional[str]) -> str:
    from kubernetes import config

    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except config.ConfigException:
        return "default"
    chosen = next((c for c in contexts if c["name"] == context), current) if context else current
    return ((chosen or {}).get("context") or {}).get("namespace") or "default"


def describe_labels(selector: Optional[dict]) -> str:
    """A LabelSelector as kubectl prints one: ``app=web,tier in (a,b),!canary``."""
    if not selector:
        return "*"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or ():
        op, key, values = e.get("operator"), e.get("key"), ",".join(e.get("values") or ())
        parts.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                      "DoesNotExist": f"!{key}"}.get(op, f"{key} {op} ({values})"))
    return ",".join(parts) or "*"


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _table(rows: List[List[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def offline(kube: KubeClient, options: dict):
    """ECI-Profile in a host of its own, its caches filled with what the cluster holds now; and the
    Selectors as listed."""
    from framework.testing import PluginHarness
    from plugins.eci_profile import plugin

    objects = []
    for path, kind, api_version in (("/apis/eci.aliyun.com/v1/selectors", "Selector", "eci.aliyun.com/v1"),
                                    ("/api/v1/namespaces", "Namespace", "v1"), ("/api/v1/nodes", "Node", "v1")):
        for obj in list_pages(kube, path, PAGE):
            objects.append({**obj, "kind": kind, "apiVersion": api_version})
    harness = PluginHarness(("eci_profile", plugin), options={"eci_profile": options}, objects=objects)
    return harness, [o for o in objects if o["kind"] == "Selector"]


def count_wins(profile, pods: Iterable[dict], left_alone) -> Dict[str, int]:
    """How many of ``pods`` each Selector wins. The pods of one workload share their namespace and
    labels, and so their winner: resolved once for each such pair (unless a plugin's own
    eci_selector_matches or eci_resolve may look at more of the pod than that)."""
    wins: Dict[str, int] = {}
    winners: Dict[tuple, Optional[str]] = {}
    by_labels = not (profile.custom_match or profile.custom_resolve)
    # Pages of decoded JSON hold no cycles: reference counting frees them. Collections would only
    # walk them again and again (a third of the time through 50,000 pods).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for pod in pods:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or left_alone(pod):
                continue
            meta = pod["metadata"]
            namespace = meta.get("namespace") or "default"
            key = (namespace, frozenset((meta.get("labels") or {}).items())) if by_labels else None
            if key is None or key not in winners:
                selector = profile.resolve(pod, namespace).selector
                winner = selector.name if selector is not None else None
                if key is not None:
                    winners[key] = winner
            else:
                winner = winners[key]
            if winner is not None:
                wins[winner] = wins.get(winner, 0) + 1
    finally:
        if collecting:
            gc.enable()
    return wins


def cmd_selectors(kube: KubeClient, options: dict) -> int:
    from plugins.eci_profile.plugin import profile_of
    from plugins.eci_profile.profile import SELECTORS, left_alone

    harness, selectors = offline(kube, options)
    with harness:
        profile = profile_of(harness.host)
        pods = list_pages(kube, "/api/v1/pods", PAGE, accept=METADATA_ONLY, fieldSelector=UNFINISHED)
        wins = count_wins(profile, pods, left_alone)
        rows = [["NAME", "PRIORITY", "POLICY", "PODS", "OBJECT LABELS", "NAMESPACE LABELS", "VIRTUAL", "TIERS",
                 "WAITING", "VALID"]]
        cached = harness.store(SELECTORS)
        for obj in sorted(selectors, key=lambda o: (-_int((o.get("spec") or {}).get("priority")),
                                                    o["metadata"]["name"])):
            name, spec, status = obj["metadata"]["name"], obj.get("spec") or {}, obj.get("status") or {}
            entry = cached.get_by_name(name) or {}
            cap = spec.get("maxVirtualPods")
            used = status.get("virtualPods", 0)
            valid = "True" if entry.get("selector") is not None else f"False ({entry.get('error')})"
            rows.append([name, spec.get("priority") or 0, status.get("policy") or next(iter(spec.get("policy") or {}), ""),
                         wins.get(name, 0), describe_labels(spec.get("objectLabels")),
                         describe_labels(spec.get("namespaceLabels")),
                         f"{used}/{cap}" if cap is not None else str(used), status.get("tiers") or "-",
                         status.get("waitingPods", 0), valid])
    print(_table(rows) if len(rows) > 1 else "No Selectors.")
    return 0


def cmd_explain(kube: KubeClient, args, options: dict) -> int:
    from plugins.eci_profile.plugin import profile_of

    namespace, _, name = args.pod.rpartition("/")
    namespace = namespace or args.namespace or default_namespace(args.kubeconfig, args.context)
    pod = kube.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    harness, _ = offline(kube, options)
    with harness:
        print(f"pod {namespace}/{name}")
        for line in profile_of(harness.host).explain_lines(pod, namespace):
            print(f"  {line}")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        kube = KubeClient.from_kubeconfig(args.kubeconfig, args.context)
        options = eci_options(kube, args.host_config)
        if args.command == "selectors":
            return cmd_selectors(kube, options)
        return cmd_explain(kube, args, options)
    except (ApiError, CredentialsError, OSError, ValueError) as exc:
        print(f"kubectl eci: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
