"""deploy/: one apply on a bare cluster gives a working, safe install, with certificates made at start-up.

The first tests read the manifests (the all-in-one file is the current rendering, the objects are
what the issue asks for, the cert-manager overlay is coherent, the Dockerfile runs what the
Deployment runs). The rest run on a control plane of their own, started bare for this module (the
suite's shared one already has the test webhook "admission-host" and its namespace): server-side
dry run, the real apply, the ServiceAccount's permissions, and ``admission-host serve`` run as the
rendered Deployment runs it (its args, its ConfigMap, its ServiceAccount's token) creating and
renewing its certificate Secret and caBundle, with the API server calling it. No kubelet runs the
Deployment's pods here; the webhook's clientConfig is pointed at the host on loopback instead.
"""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import yaml
from cryptography import x509

from framework import ApiError, KubeClient
from framework.certs import Bundle, CertManager, service_names
from framework.cli import build_parser
from tests.e2e import cluster
from tests.e2e.host import DEPLOY, REPO, HostProcess, free_port, kubectl, wait_for
from tests.e2e.image import container_env, expand

NS = "admission-host"
SA = f"system:serviceaccount:{NS}:admission-host"
SECRET_NAME = "admission-host-tls"
SECRET = f"/api/v1/namespaces/{NS}/secrets/{SECRET_NAME}"
WEBHOOK = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/admission-host"
OVERLAY_1_20 = DEPLOY / "overlays" / "kubernetes-1.20"
TOLERATION = {"key": "k8s.aliyun.com/vnode", "operator": "Equal", "value": "true", "effect": "NoSchedule"}


def kustomize(path: Path) -> str:
    proc = subprocess.run([cluster.kubectl_path(), "kustomize", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def render(path: Path = DEPLOY) -> List[dict]:
    return [d for d in yaml.safe_load_all(kustomize(path)) if d]


def find(objects: List[dict], kind: str, name: Optional[str] = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(objects: List[dict]) -> dict:
    """The one container of the one Deployment (whatever a release named it)."""
    (c,) = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def flags(args: List[str]) -> Dict[str, str]:
    return dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)


def selector_matches(selector: dict, labels: dict) -> bool:
    """A LabelSelector, as the API server evaluates objectSelector."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and key in labels and labels[key] in values) \
                or (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


# -- the manifests -------------------------------------------------------------------------------------
def test_all_in_one_yaml_is_the_current_rendering():
    text = (DEPLOY / "admission-host.yaml").read_text()
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("# "))
    assert body == kustomize(DEPLOY), "deploy/admission-host.yaml is out of date: run hack/render-deploy.sh"
    # The script runs "kubectl" from PATH: the one the tests use comes first.
    path = os.pathsep.join([os.path.dirname(cluster.kubectl_path()), os.environ.get("PATH", "")])
    check = subprocess.run(["bash", str(REPO / "hack" / "render-deploy.sh"), "--check"], capture_output=True,
                           text=True, timeout=60, env=dict(os.environ, PATH=path))
    assert check.returncode == 0, check.stderr


def test_install_has_every_object_a_bare_cluster_needs():
    objects = render()
    kinds = sorted((o["kind"], re.sub(r"^admission-host-config-[a-z0-9]{10}$", "admission-host-config-HASH",
                                      o["metadata"]["name"])) for o in objects)
    assert kinds == sorted([
        ("Namespace", NS), ("CustomResourceDefinition", "selectors.eci.aliyun.com"),
        ("ServiceAccount", "admission-host"),
        ("ClusterRole", "admission-host"), ("ClusterRoleBinding", "admission-host"),
        ("Role", "admission-host"), ("RoleBinding", "admission-host"),
        ("ClusterRole", "admission-host-certificates"), ("ClusterRoleBinding", "admission-host-certificates"),
        ("Role", "admission-host-certificates"), ("RoleBinding", "admission-host-certificates"),
        ("ConfigMap", "admission-host-config-HASH"), ("Deployment", "admission-host"),
        ("PodDisruptionBudget", "admission-host"), ("Service", "admission-host"),
        ("MutatingWebhookConfiguration", "admission-host")])
    for o in objects:
        if o["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                             "MutatingWebhookConfiguration"):
            assert o["metadata"]["namespace"] == NS, o["metadata"]


def test_deployment_is_replicated_probed_bounded_and_locked_down():
    objects = render()
    deployment = find(objects, "Deployment")
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    c = container(objects)
    assert deployment["spec"]["replicas"] == 2
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selector_matches(term["labelSelector"], pod["metadata"]["labels"])
    port = next(p for p in c["ports"] if p["name"] == "https")
    assert int(flags(c["args"])["port"]) == port["containerPort"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    assert set(c["resources"]["requests"]) == {"cpu", "memory"} and set(c["resources"]["limits"]) == {"cpu", "memory"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert spec["serviceAccountName"] == find(objects, "ServiceAccount")["metadata"]["name"]
    pdb = find(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and selector_matches(pdb["spec"]["selector"], pod["metadata"]["labels"])
    service = find(objects, "Service")
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    assert selector_matches({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])


def test_deployment_args_agree_with_the_other_objects():
    objects = render()
    c = container(objects)
    spec = find(objects, "Deployment")["spec"]["template"]["spec"]
    args = c["args"]
    assert "command" not in c  # the image's entrypoint (admission-host) runs these args
    assert args[0] == "serve"
    env = kubelet_env(objects)
    assert env["CPU_LIMIT"] == "1"  # --workers follows the CPU limit, rounded up
    build_parser().parse_args(expand(args, env))  # every flag exists
    f = flags(args)
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    # The config file comes from the ConfigMap, and parses as the host's configuration.
    config_mount = mounts[os.path.dirname(f["config"])]
    config_map = find(objects, "ConfigMap", volumes[config_mount["name"]]["configMap"]["name"])
    assert os.path.basename(f["config"]) in config_map["data"]
    # The certificate is written to a writable, memory-backed emptyDir (the root FS is read-only).
    cert_mount = mounts[f["cert-dir"]]
    assert not cert_mount.get("readOnly") and volumes[cert_mount["name"]]["emptyDir"]["medium"] == "Memory"
    assert "tls-cert-file" not in f and "tls-private-key-file" not in f
    # The names in the args are those of the objects (and of the RBAC that allows them).
    assert f["service-name"] == find(objects, "Service")["metadata"]["name"]
    assert f["webhook-configuration"] == find(objects, "MutatingWebhookConfiguration")["metadata"]["name"]
    role = find(objects, "Role", "admission-host-certificates")
    assert [r for r in role["rules"] if "get" in r["verbs"]][0]["resourceNames"] == [f["cert-secret"]]
    cluster_role = find(objects, "ClusterRole", "admission-host-certificates")
    assert cluster_role["rules"][0]["resourceNames"] == [f["webhook-configuration"]]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def kubelet_env(objects: List[dict]) -> dict:
    """The rendered container's environment as the kubelet sets it."""
    return container_env(find(objects, "Deployment"), container(objects))


def test_webhook_configuration_is_safe():
    objects = render()
    (hook,) = find(objects, "MutatingWebhookConfiguration")["webhooks"]
    assert hook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                              "resources": ["pods", "pods/binding"], "scope": "*"}]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["timeoutSeconds"] == 5
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["admissionReviewVersions"] == ["v1", "v1beta1"]
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["matchPolicy"] == "Equivalent"
    service = find(objects, "Service")
    assert hook["clientConfig"]["service"] == {"name": service["metadata"]["name"], "namespace": NS,
                                               "path": "/mutate", "port": 443}
    assert "caBundle" not in hook["clientConfig"]  # set at start-up by the host
    # The host's own pods are never sent to it: it can never block its own start.
    own = find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not selector_matches(hook["objectSelector"], own)
    assert selector_matches(hook["objectSelector"], {"app": "nginx"})


def mounted_config(objects: List[dict]) -> dict:
    """The ConfigMap the Deployment's pods mount their config file from."""
    (volume,) = [v for v in find(objects, "Deployment")["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    return find(objects, "ConfigMap", volume["configMap"]["name"])


def test_a_config_change_is_a_new_config_map_so_the_pods_roll(tmp_path):
    """The host reads its config file at start-up only. kustomize names the ConfigMap after a hash
    of config.yaml: a changed file is a new name in the pod template, so `kubectl apply -k` rolls
    the pods, in deploy/ and in its overlays."""
    shutil.copytree(DEPLOY, tmp_path / "deploy", ignore=shutil.ignore_patterns("helm"))
    copies = {path: tmp_path / "deploy" / path.relative_to(DEPLOY) for path in (DEPLOY, OVERLAY_1_20)}
    before = {path: render(copied) for path, copied in copies.items()}
    config = tmp_path / "deploy" / "base" / "config.yaml"
    config.write_text(config.read_text().replace("enabledPlugins: [eci_profile]",
                                                 "enabledPlugins: [eci_profile, pod_deletion_cost]"))
    for path, copied in copies.items():
        after = render(copied)
        old, new = mounted_config(before[path]), mounted_config(after)
        assert old["metadata"]["name"] != new["metadata"]["name"], path
        assert "pod_deletion_cost" in new["data"]["config.yaml"]
        pod_template = find(after, "Deployment")["spec"]["template"]
        assert pod_template != find(before[path], "Deployment")["spec"]["template"]  # a rollout
        # What deletes deploy/'s objects by label deletes it too.
        assert new["metadata"]["labels"] == {"app.kubernetes.io/name": "admission-host"}


def test_no_private_key_in_the_repository():
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    pattern = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
    offenders = []
    for name in tracked:
        path = REPO / name
        if path.is_file() and path.stat().st_size < 5_000_000:
            if pattern.search(path.read_text(errors="ignore")):
                offenders.append(name)
    assert offenders == []
    assert not pattern.search(kustomize(DEPLOY)) and not pattern.search(kustomize(DEPLOY / "overlays" / "cert-manager"))


def test_kubernetes_1_20_overlay_only_changes_the_pdb_version_and_drops_match_conditions():
    base, old = render(), render(OVERLAY_1_20)
    pdb = find(old, "PodDisruptionBudget")
    assert find(base, "PodDisruptionBudget")["apiVersion"] == "policy/v1" and pdb["apiVersion"] == "policy/v1beta1"
    pdb["apiVersion"] = "policy/v1"
    (hook,) = find(base, "MutatingWebhookConfiguration")["webhooks"]
    assert "matchConditions" not in find(old, "MutatingWebhookConfiguration")["webhooks"][0]
    del hook["matchConditions"]
    assert old == base


def test_cert_manager_overlay_is_coherent():
    base, objects = render(), render(DEPLOY / "overlays" / "cert-manager")
    c = container(objects)
    f = flags(c["args"])
    build_parser().parse_args(expand(c["args"], kubelet_env(objects)))
    # No certificate management by the host, and none of its permissions.
    assert not {"cert-secret", "cert-dir", "service-name", "webhook-configuration"} & set(f)
    assert not [o for o in objects if o["metadata"]["name"] == "admission-host-certificates"]
    # The other args are the base's.
    base_args = [a for a in container(base)["args"] if not a.startswith(
        ("--cert-secret", "--cert-dir", "--service-name", "--webhook-configuration"))]
    assert [a for a in c["args"] if not a.startswith(("--tls-cert-file", "--tls-private-key-file"))] == base_args
    # The files are served from the Secret the serving Certificate writes.
    mount = next(m for m in c["volumeMounts"] if f["tls-cert-file"].startswith(m["mountPath"] + "/"))
    assert f["tls-private-key-file"] == mount["mountPath"] + "/tls.key"
    assert f["tls-cert-file"] == mount["mountPath"] + "/tls.crt"
    volume = next(v for v in find(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == mount["name"])
    assert set(volume) == {"name", "secret"}
    certificates = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Certificate"}
    issuers = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Issuer"}
    serving = next(o for o in certificates.values() if o["spec"]["secretName"] == volume["secret"]["secretName"])
    assert serving["metadata"]["namespace"] == NS
    assert set(service_names("admission-host", NS)) <= set(serving["spec"]["dnsNames"])
    assert "server auth" in serving["spec"]["usages"]
    # caBundle: injected from that Certificate, by a CA of its own that renewals keep.
    webhook = find(objects, "MutatingWebhookConfiguration")
    assert webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"{NS}/{serving['metadata']['name']}"
    ca_issuer = issuers[serving["spec"]["issuerRef"]["name"]]
    ca_cert = next(o for o in certificates.values() if o["spec"]["secretName"] == ca_issuer["spec"]["ca"]["secretName"])
    assert ca_cert["spec"]["isCA"] is True
    assert "selfSigned" in issuers[ca_cert["spec"]["issuerRef"]["name"]]["spec"]
    for o in list(certificates.values()) + list(issuers.values()):
        assert o["metadata"]["namespace"] == NS
    # Everything else is the base's.
    strip = {"Certificate", "Issuer"}
    rest = [o for o in objects if o["kind"] not in strip]
    assert len(rest) == len(base) - 4


def test_dockerfile_runs_what_the_deployment_runs():
    dockerfile = (REPO / "Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.replace("\\\n", " ").splitlines()
             if line.strip() and not line.strip().startswith("#")]
    stages = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    final = lines[stages[-1]:]
    base_image = re.search(r"ARG PYTHON_IMAGE=(\S+)", dockerfile).group(1)
    assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base_image)
    assert all(re.match(r"FROM \$\{PYTHON_IMAGE\}", lines[i]) for i in stages)
    # The entrypoint is the console script the Deployment's args are for.
    entrypoint = next(line for line in final if line.startswith("ENTRYPOINT"))
    assert entrypoint == 'ENTRYPOINT ["admission-host"]'
    assert "admission-host = framework.cli:main" in (REPO / "setup.py").read_text()
    assert container(render())["args"][0] == "serve" and "command" not in container(render())
    # Non-root, and the same user the Deployment runs as.
    user = next(line for line in final if line.startswith("USER")).split()[1]
    run_as = find(render(), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert user == f"{run_as['runAsUser']}:{run_as['runAsGroup']}"
    # No build tools in the final image: it only copies the virtualenv from the build stage.
    assert not [line for line in final if re.search(r"apt-get|apk |gcc|build-essential|pip install", line)]
    assert any(line.startswith("COPY --from=build /opt/admission-host") for line in final)
    assert "--only-binary=:all: -r requirements.txt" in dockerfile
    # Every file the Dockerfile copies passes .dockerignore.
    copied = [p for line in lines if line.startswith("COPY ") and "--from" not in line for p in line.split()[1:-1]]
    kept = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    for path in copied:
        assert path.rstrip("/") in kept, path
        assert (REPO / path).exists(), path


def test_requirements_pin_every_dependency():
    import importlib.metadata as md

    from packaging.requirements import Requirement

    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    setup = (REPO / "setup.py").read_text()
    direct = re.search(r"install_requires=\[(.*?)\]", setup, re.S).group(1)
    for spec in re.findall(r'"([^"]+)"', direct):
        req = Requirement(spec)
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        assert key in pins, f"{req.name} is not pinned"
        assert req.specifier.contains(pins[key]), f"{req.name}=={pins[key]} does not satisfy {spec}"
    # What the pinned distributions require is pinned too (checked where the pinned version is installed).
    env = {"extra": "", "python_version": "3.11", "python_full_version": "3.11.0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_python_implementation": "CPython",
           "implementation_name": "cpython", "os_name": "posix", "platform_machine": "x86_64"}
    for key, version in pins.items():
        try:
            dist = md.distribution(key)
        except md.PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        for spec in dist.requires or ():
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate(env):
                dep = re.sub(r"[-_.]+", "-", req.name).lower()
                assert dep in pins, f"{key} needs {req.name}, which is not pinned"
                assert req.specifier.contains(pins[dep]), f"{key} needs {spec}; pinned {pins[dep]}"


# -- on a bare control plane ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    cp = cluster.ControlPlane(tmp_path_factory.mktemp("bare-control-plane"))
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture(scope="module")
def bare_admin(bare) -> KubeClient:
    return KubeClient.from_kubeconfig(str(bare.admin_kubeconfig))


def server_has_policy_v1(cp) -> bool:
    return "policy/v1" in kubectl(cp, "api-versions").stdout.split()


def test_server_dry_run_accepts_the_install(bare, bare_admin):
    # Server-side dry run persists nothing, so objects in a namespace the same run would create
    # are refused (namespace not found): the namespace has to exist first.
    kubectl(bare, "apply", "-f", str(DEPLOY / "base" / "namespace.yaml"))
    names = [f"{o['kind']}/{o['metadata']['name']}" for o in render()]
    # The base fits current releases, the overlay 1.20: PodDisruptionBudget is policy/v1 only from
    # 1.21 and policy/v1beta1 only until 1.24. Each is refused for exactly that object elsewhere.
    fits, other = (DEPLOY, OVERLAY_1_20) if server_has_policy_v1(bare) else (OVERLAY_1_20, DEPLOY)
    proc = kubectl(bare, "apply", "--dry-run=server", "-k", str(fits), check=False)
    assert proc.returncode == 0, proc.stderr
    assert len([line for line in proc.stdout.splitlines() if line.endswith("(server dry run)")]) == len(names)
    # --validate=false: the server's word alone (kubectl 1.20 also refuses the base's webhook
    # matchConditions, a field it does not know and its API server would drop).
    proc = kubectl(bare, "apply", "--dry-run=server", "--validate=false", "-k", str(other), check=False)
    accepted = [line for line in proc.stdout.splitlines() if line.endswith("(server dry run)")]
    errors = [line for line in proc.stderr.splitlines() if line.startswith(("error", "Error"))]
    assert len(errors) == 1 and 'no matches for kind "PodDisruptionBudget"' in errors[0], proc.stderr
    assert len(accepted) == len(names) - 1, proc.stdout
    with pytest.raises(ApiError) as missing:  # nothing was created
        bare_admin.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/selectors.eci.aliyun.com")
    assert missing.value.status == 404


@pytest.fixture(scope="module")
def installed(bare, bare_admin):
    """The real apply (the 1.20 variant on this 1.20 server); the Deployment's pods never run here."""
    overlay = OVERLAY_1_20 if not server_has_policy_v1(bare) else DEPLOY
    kubectl(bare, "apply", "-k", str(overlay))
    wait_for(lambda: bare_admin.get("/apis/eci.aliyun.com/v1/selectors") is not None, what="selectors served")
    return render(overlay)


def test_apply_creates_every_object(bare, installed):
    proc = kubectl(bare, "get", "-k", str(OVERLAY_1_20 if not server_has_policy_v1(bare) else DEPLOY),
                   "-o", "name")
    assert len(proc.stdout.split()) == len(installed)


def can_i(cp, namespace: str, kubeconfig: Optional[Path] = None, as_user: bool = True) -> set:
    """``kubectl auth can-i --list`` as a set of (resource, non-resource URLs, resource names, verbs)."""
    env = dict(os.environ, KUBECONFIG=str(kubeconfig or cp.admin_kubeconfig))
    args = [cp.kubectl, "auth", "can-i", "--list", "-n", namespace] + ([f"--as={SA}"] if as_user else [])
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = set()
    for line in proc.stdout.splitlines()[1:]:
        m = re.fullmatch(r"(\S*)\s*\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*", line)
        assert m, line
        rows.add(tuple(m.groups()))
    return rows


# Everything the host's ServiceAccount may do in a cluster with nothing else granting anything:
# (resource, non-resource URLs, resource names, verbs).
EVERYONE = {  # system:basic-user: every authenticated user may ask what it may do
    ("selfsubjectaccessreviews.authorization.k8s.io", "", "", "create"),
    ("selfsubjectrulesreviews.authorization.k8s.io", "", "", "create"),
}
if cluster.selected_release() is not cluster.OLDEST:
    EVERYONE |= {
        ("selfsubjectreviews.authentication.k8s.io", "", "", "create"),  # "who am I" (1.28+)
        ("clustertrustbundles.certificates.k8s.io", "", "", "get list watch"),  # public CA bundles (1.33+)
    }
CLUSTER_WIDE = {
    ("selectors.eci.aliyun.com", "", "", "get list watch"),  # cached
    ("namespaces", "", "", "get list watch"),  # cached (labels)
    ("nodes", "", "", "get list watch"),  # cached (labels)
    ("pods", "", "", "get list watch patch"),  # pending pods cached; tolerations (burst), labels (binding)
    ("selectors.eci.aliyun.com/status", "", "", "patch"),  # why a Selector is ignored
    ("events", "", "", "create list"),
    ("pods/eviction", "", "", "create"),  # drain-back
    # Its own webhook configuration's caBundle, no other.
    ("mutatingwebhookconfigurations.admissionregistration.k8s.io", "", "admission-host", "get patch"),
}
OWN_NAMESPACE = {
    ("leases.coordination.k8s.io", "", "", "create"),  # leader election
    ("leases.coordination.k8s.io", "", "admission-host", "get update"),
    ("configmaps", "", "", "get list create update delete"),  # the caps' records, shared by the replicas
    ("secrets", "", "", "create"),  # its certificate Secret: created by the first replica
    ("secrets", "", "admission-host-tls", "get update"),  # read and renewed; no other Secret readable
}


def test_service_account_may_do_exactly_what_the_host_needs(bare, installed, sa_kubeconfig):
    for namespace, expected in ((NS, EVERYONE | CLUSTER_WIDE | OWN_NAMESPACE), ("default", EVERYONE | CLUSTER_WIDE)):
        rows = can_i(bare, namespace)
        resources = {r for r in rows if r[0]}
        assert resources == expected, (namespace, resources ^ expected)
        # The rest are discovery URLs (/api, /version, /healthz...), read-only, granted to everyone.
        assert {r[3] for r in rows if not r[0]} == {"get"}
        # The same, asked with the ServiceAccount's own token (its groups included).
        assert {r for r in can_i(bare, namespace, sa_kubeconfig, as_user=False) if r[0]} == expected


@pytest.fixture(scope="module")
def sa_kubeconfig(bare, bare_admin, installed, tmp_path_factory) -> Path:
    token = bare_admin.post(f"/api/v1/namespaces/{NS}/serviceaccounts/admission-host/token",
                            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                             "spec": {"expirationSeconds": 86400}})["status"]["token"]
    return bare.write_kubeconfig(tmp_path_factory.mktemp("sa") / "kubeconfig", token=token, user=SA)


class DeployedHost(HostProcess):
    """``admission-host serve`` as the rendered Deployment's container runs it.

    Its args (``--port`` changed to a free one; paths under the container's mounts moved to local
    directories, the ConfigMap's files written there), its env (POD_NAMESPACE from the fieldRef),
    plus what replaces the pod's network and in-cluster credentials: ``--kubeconfig`` with the
    ServiceAccount's token, ``--bind-address 127.0.0.1``, and 127.0.0.1 as an extra certificate name
    (the API server reaches it on loopback).
    """

    def __init__(self, objects: List[dict], workdir: Path, kubeconfig: Path, port: Optional[int] = None,
                 extra_args: List[str] = ()):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        deployment = find(objects, "Deployment")
        spec = deployment["spec"]["template"]["spec"]
        c = container(objects)
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {}
        for mount in c["volumeMounts"]:
            local = self.workdir / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            source = volumes[mount["name"]]
            if "configMap" in source:
                data = find(objects, "ConfigMap", source["configMap"]["name"])["data"]
                for key, value in data.items():
                    (local / key).write_text(value)
            mounts[mount["mountPath"]] = local
        self.mounts = mounts
        args = []
        container_env = kubelet_env(objects)
        for arg in expand(c["args"], container_env):
            if arg.startswith("--port="):
                arg = f"--port={self.port}"
            elif arg.startswith("--") and "=" in arg:
                flag, value = arg.split("=", 1)
                for path in sorted(mounts, key=len, reverse=True):
                    if value == path or value.startswith(path + "/"):
                        arg = f"{flag}={mounts[path]}{value[len(path):]}"
                        break
            args.append(arg)
        exe = shutil.which("admission-host")
        command = [exe] if exe else [sys.executable, "-m", "framework.cli"]
        self.args = command + args + ["--kubeconfig", str(kubeconfig), "--bind-address", "127.0.0.1",
                                      "--cert-extra-san", "127.0.0.1", "--shutdown-grace-seconds", "2",
                                      *extra_args]
        self.env = {**os.environ, **container_env}
        self.env.pop("KUBERNETES_SERVICE_HOST", None)
        self.log_path = self.workdir / "admission-host.log"
        self.proc: Optional[subprocess.Popen] = None
        # url, wait_ready, stop and log_tail are HostProcess's; only the setup differs.

    def start(self, wait: bool = False) -> "DeployedHost":  # the tests check readiness themselves
        return super().start(wait)

    def get(self, path: str, ca_pem: Optional[bytes] = None) -> tuple:
        ctx = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else ssl._create_unverified_context()
        try:
            with urllib.request.urlopen(self.url + path, context=ctx, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def served_certificate(self) -> x509.Certificate:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            with ssl._create_unverified_context().wrap_socket(sock) as tls:
                return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def apply_webhook_to_loopback(cp, objects: List[dict], port: int) -> None:
    """kubectl apply the install's webhook configuration with its clientConfig pointed at the host on
    loopback (no Service endpoints without a kubelet); everything else as rendered."""
    webhook = copy.deepcopy(find(objects, "MutatingWebhookConfiguration"))
    for hook in webhook["webhooks"]:
        hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}/mutate"}
    kubectl(cp, "apply", "-f", "-", input=yaml.safe_dump(webhook))


@pytest.fixture(scope="module")
def webhook_port(bare, installed) -> int:
    port = free_port()
    apply_webhook_to_loopback(bare, installed, port)
    return port


@pytest.fixture
def hosts(installed, sa_kubeconfig, tmp_path):
    started: List[DeployedHost] = []

    def start(n: int = 1, port: Optional[int] = None, extra_args: List[str] = ()) -> List[DeployedHost]:
        new = [DeployedHost(installed, tmp_path / f"host{len(started) + i}", sa_kubeconfig,
                            port=port if i == 0 else None, extra_args=list(extra_args)) for i in range(n)]
        for h in new:  # all at once
            h.start()
        started.extend(new)
        return new

    yield start
    for h in started:
        h.stop()


def secret_bundle(kube: KubeClient) -> Bundle:
    return Bundle.from_secret(kube.get(SECRET))


def ca_bundle(kube: KubeClient) -> bytes:
    return base64.b64decode(kube.get(WEBHOOK)["webhooks"][0]["clientConfig"].get("caBundle") or "")


def delete_secret(kube: KubeClient) -> None:
    try:
        kube.delete(SECRET)
    except ApiError as exc:
        if exc.status != 404:
            raise


def api_server_calls_the_host(kube: KubeClient, tag: str) -> None:
    """A pod created through the API server gets the ECI-Profile toleration: the webhook answered over TLS."""
    ns = f"deploy-{tag}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    pod = kube.post(f"/api/v1/namespaces/{ns}/pods", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "deploy-test"}},
        "spec": {"containers": [{"name": "main", "image": "nginx"}]}})
    assert TOLERATION in (pod["spec"].get("tolerations") or []), pod["spec"]
    kube.delete(f"/api/v1/namespaces/{ns}/pods/web", gracePeriodSeconds=0)


@pytest.fixture(scope="module")
def fair_selector(bare_admin, installed):
    body = {"apiVersion": "eci.aliyun.com/v1", "kind": "Selector", "metadata": {"name": "deploy-test"},
            "spec": {"objectLabels": {"matchLabels": {"app": "deploy-test"}}, "policy": {"fair": {}}}}
    bare_admin.post("/apis/eci.aliyun.com/v1/selectors", body)
    return body


def test_host_makes_its_certificate_and_the_api_server_calls_it(bare, bare_admin, hosts, webhook_port,
                                                                  fair_selector):
    delete_secret(bare_admin)
    assert ca_bundle(bare_admin) == b""
    (host,) = hosts(1, port=webhook_port)
    host.wait_ready()
    secret = bare_admin.get(SECRET)
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    bundle = Bundle.from_secret(secret)
    # Served: the Secret's certificate, for the Service's names, trusted through the caBundle.
    assert host.served_certificate() == bundle.certificate
    names = bundle.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(service_names("admission-host", NS)) <= set(names.get_values_for_type(x509.DNSName))
    assert ca_bundle(bare_admin) == bundle.ca_pem
    assert host.get("/readyz", ca_pem=bundle.ca_pem)[0] == 200
    files = host.mounts["/run/admission-host/tls"]
    assert (files / "tls.crt").read_bytes() == bundle.cert_pem
    api_server_calls_the_host(bare_admin, "first")
    # Applying the webhook configuration again (an upgrade) leaves the caBundle the host set alone.
    apply_webhook_to_loopback(bare, render(OVERLAY_1_20), webhook_port)
    assert ca_bundle(bare_admin) == bundle.ca_pem
    # A restart keeps the Secret's CA and certificate: nothing to renew, nothing rewritten.
    rv = secret["metadata"]["resourceVersion"]
    host.stop()
    (again,) = hosts(1, port=webhook_port)
    again.wait_ready()
    assert bare_admin.get(SECRET)["metadata"]["resourceVersion"] == rv
    api_server_calls_the_host(bare_admin, "restarted")


def test_two_hosts_started_at_once_converge_on_one_secret(bare_admin, hosts, webhook_port, fair_selector):
    delete_secret(bare_admin)
    a, b = hosts(2, port=webhook_port)
    a.wait_ready(), b.wait_ready()
    bundle = secret_bundle(bare_admin)
    assert a.served_certificate() == b.served_certificate() == bundle.certificate
    assert ca_bundle(bare_admin) == bundle.ca_pem
    logs = a.log_path.read_text() + b.log_path.read_text()
    assert logs.count("created Secret") == 1, logs
    api_server_calls_the_host(bare_admin, "two")


def test_concurrent_creations_conflict_and_all_adopt_the_winner(bare_admin, sa_kubeconfig, installed, tmp_path):
    """Many replicas that all found no Secret POST at the same instant: one wins, the rest read it."""
    delete_secret(bare_admin)
    n = 6
    barrier = threading.Barrier(n, timeout=20)
    conflicts = []

    class Racing(KubeClient):
        def post(self, path, body, **query):
            barrier.wait()  # every replica has seen 404 and made its own CA
            try:
                return super().post(path, body, **query)
            except ApiError as exc:
                conflicts.append(exc.status)
                raise

    results, errors = [None] * n, []

    def replica(i):
        kube = Racing.from_kubeconfig(str(sa_kubeconfig))
        m = CertManager(kube, NS, SECRET_NAME, service_names("admission-host", NS),
                        webhook_configuration="admission-host", cert_dir=str(tmp_path / f"r{i}"))
        try:
            results[i] = m.sync()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert conflicts == [409] * (n - 1)
    stored = secret_bundle(bare_admin)
    assert all(r == stored for r in results)
    assert ca_bundle(bare_admin) == stored.ca_pem
    for i in range(n):
        assert (tmp_path / f"r{i}" / "tls.crt").read_bytes() == stored.cert_pem


def test_renewal_changes_the_served_certificate_without_restart(bare_admin, hosts, webhook_port, fair_selector):
    delete_secret(bare_admin)
    # 12 s certificates: renewed 4 s before they expire; both replicas race to renew each one.
    a, b = hosts(2, port=webhook_port, extra_args=["--cert-validity", "12"])
    a.wait_ready(), b.wait_ready()
    first = secret_bundle(bare_admin)
    pids = (a.proc.pid, b.proc.pid)
    assert a.served_certificate() == first.certificate

    def renewed_everywhere():
        stored = secret_bundle(bare_admin)
        served = a.served_certificate(), b.served_certificate()
        return stored if stored.certificate != first.certificate and served == (stored.certificate,) * 2 else None

    renewed = wait_for(renewed_everywhere, 30, 0.2, "a renewed certificate served by both hosts")
    assert renewed.ca_pem == first.ca_pem and renewed.ca_key_pem == first.ca_key_pem  # the CA is kept
    assert ca_bundle(bare_admin) == first.ca_pem
    assert (a.proc.pid, b.proc.pid) == pids and a.proc.poll() is None and b.proc.poll() is None
    api_server_calls_the_host(bare_admin, "renewed")
    logs = a.log_path.read_text() + b.log_path.read_text()
    assert "renewed the serving certificate" in logs


def test_not_ready_until_the_certificate_is_in_place(bare_admin, hosts):
    # A Secret name the ServiceAccount may not read: the certificate never arrives.
    (host,) = hosts(1, extra_args=["--cert-secret", "not-this-one"])
    def healthy():
        assert host.proc.poll() is None, host.log_tail()
        try:
            return host.get("/healthz")[0] == 200
        except OSError:
            return False

    wait_for(healthy, 30, 0.1, "/healthz")
    time.sleep(1)
    status, text = host.get("/readyz")
    assert status == 503
    assert f"waiting for Secret {NS}/not-this-one" in text and "forbidden" in text, text
    assert "bootstrap" in host.served_certificate().issuer.rfc4514_string()


# A third-party plugin that mutates DaemonSet pods (it labels them) and skips the kubelets' own.
DAEMONSET_MARKER = '''
from framework import Mutator, hookimpl


@hookimpl
def admission_host_mutators():
    def mutate(request):
        meta = request.object["metadata"]
        if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or ()):
            meta.setdefault("labels", {})["example.com/daemon"] = "seen"

    return [Mutator(name="daemonset-marker", mutate=mutate, skip=("static-pods", "mirror-pods"))]
'''


def install_plugin(site: Path, name: str, source: str) -> Path:
    """A distribution with an admission_host entry point, as pip would leave it, importable from ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{name}.py").write_text(source)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[admission_host]\n{name} = {name}\n")
    return site


def live_conditions(kube: KubeClient) -> List[str]:
    (hook,) = kube.get(WEBHOOK)["webhooks"]
    return [c["name"] for c in hook.get("matchConditions") or ()]


@pytest.mark.skipif(not cluster.selected_release().simulated_nodes,
                    reason="matchConditions are served from 1.28, DaemonSets run where controllers do")
def test_a_plugin_that_wants_daemonset_pods_gets_them(bare, bare_admin, installed, sa_kubeconfig, webhook_port,
                                                     fair_selector, tmp_path):
    """Enabled in the config file alone, deploy/ otherwise as it is: the host drops the condition
    that kept DaemonSet pods from being sent, keeps those every plugin agrees on, and the plugin
    gets its pods. With the default config again, the condition is back."""
    apply_webhook_to_loopback(bare, installed, webhook_port)  # as `kubectl apply -k deploy/` left it
    assert live_conditions(bare_admin) == ["not-a-daemonset-pod", "not-a-static-pod", "not-a-mirror-pod"]
    objects = copy.deepcopy(installed)
    config = mounted_config(objects)["data"]
    config["config.yaml"] = config["config.yaml"].replace("enabledPlugins: [eci_profile]",
                                                          "enabledPlugins: [eci_profile, daemonset_marker]")
    host = DeployedHost(objects, tmp_path / "host", sa_kubeconfig, port=webhook_port)
    host.env["PYTHONPATH"] = str(install_plugin(tmp_path / "site", "daemonset_marker", DAEMONSET_MARKER))
    import kubernetes.client

    core = kubernetes.client.CoreV1Api(bare.api_client())
    node, ns = "daemons-node", "daemons"
    try:
        host.start().wait_ready()
        wait_for(lambda: live_conditions(bare_admin) == ["not-a-static-pod", "not-a-mirror-pod"], 20,
                 what="the DaemonSet condition dropped")
        cluster.create_node(core, node)
        bare_admin.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        labels = {"app": "daemons"}
        bare_admin.post(f"/apis/apps/v1/namespaces/{ns}/daemonsets", {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "main", "image": "nginx"}]}}}})
        pods = wait_for(lambda: bare_admin.get(f"/api/v1/namespaces/{ns}/pods").get("items"), 30,
                        what="the DaemonSet's pod")
        assert all(p["metadata"]["labels"].get("example.com/daemon") == "seen" for p in pods), pods
        # ECI-Profile still answers the pods it wants, through the same webhook.
        api_server_calls_the_host(bare_admin, "daemons")
    finally:
        host.stop()
        for path in (f"/api/v1/namespaces/{ns}", f"/api/v1/nodes/{node}"):
            try:
                bare_admin.delete(path)
            except ApiError:
                pass
    again = DeployedHost(installed, tmp_path / "again", sa_kubeconfig, port=webhook_port).start()
    try:
        again.wait_ready()
        wait_for(lambda: live_conditions(bare_admin) == ["not-a-daemonset-pod", "not-a-static-pod",
                                                         "not-a-mirror-pod"], 20, what="the DaemonSet condition back")
    finally:
        again.stop()
